"""The VMA's configuration defaults and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.vma.config import ConfigValueError, VmaConfig, load_vma_config


def test_config_file_over_defaults(tmp_path: Path) -> None:
    conf = tmp_path / "vma.conf"
    conf.write_text("command.x-session = xterm\ninternal.nxagent.timeout.listening = 4\n")
    config = load_vma_config(conf)
    assert config.get("command.x-session") == "xterm"
    assert config.timeouts()["listening"] == 4.0
    assert config.port == 3030
    assert config.display == 100
    assert config.hook("action", "connect") is None
    assert load_vma_config(tmp_path / "missing.conf").get("vma.user.default.name") == "qvd"


def test_bad_numbers_are_reported_with_their_key() -> None:
    with pytest.raises(ConfigValueError, match=r"internal\.vm\.port\.vma"):
        _ = VmaConfig({"internal.vm.port.vma": "http"}).port
