"""The backends' own directories: root's, 0700, never through a link."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.hostfs import private_dir


def test_private_dir_fixes_an_existing_mode(tmp_path: Path) -> None:
    target = tmp_path / "basefs"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    private_dir(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    private_dir(tmp_path / "new" / "homefs")
    assert stat.S_IMODE((tmp_path / "new" / "homefs").stat().st_mode) == 0o700


def test_private_dir_refuses_a_link_to_a_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (tmp_path / "overlays").symlink_to(elsewhere)
    with pytest.raises(TerminalBackendError, match="not a directory"):
        private_dir(tmp_path / "overlays")
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755
