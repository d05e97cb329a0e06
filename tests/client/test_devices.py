"""The client's device plumbing: the side-channel keys of client.conf and the nxproxy
options a session gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.client import settings
from qvd.client.devices import ClientSession, free_port, nxproxy_options


def test_device_keys_are_read_and_checked(tmp_path: Path) -> None:
    conf = tmp_path / "client.conf"
    conf.write_text(
        "client.printing.enable = 0\nclient.audio.enable = yes\nclient.audio.port = 4713\n"
        "client.share.0 = /home/alice/Documents\nclient.unknown = 1\n",
        encoding="utf-8",
    )
    loaded = settings.load(conf)
    assert loaded.flag("client.printing.enable") is False
    assert loaded.flag("client.audio.enable") is True
    assert loaded.get("client.audio.port") == "4713"
    assert loaded.get("client.share.0") == "/home/alice/Documents"
    assert loaded.get("client.unknown") is None


@pytest.mark.parametrize(
    ("line", "key"),
    [("client.audio.port = 70000", "client.audio.port"),
     ("client.printing.enable = maybe", "client.printing.enable")],
)  # fmt: skip
def test_a_bad_device_value_names_its_line(tmp_path: Path, line: str, key: str) -> None:
    conf = tmp_path / "client.conf"
    conf.write_text(f"# x\n{line}\n", encoding="utf-8")
    with pytest.raises(settings.SettingsError, match=f"line 2: {key}"):
        settings.load(conf)


def test_nxproxy_gets_the_devices_options_and_the_slave_listener() -> None:
    port = free_port()
    session = ClientSession(slave_key="k" * 64, env={}, slave_port=port)
    assert nxproxy_options(session, ["cups=631", "media=4713"]) == [
        "cups=631", "media=4713", f"slave={port}",
    ]  # fmt: skip
    assert nxproxy_options(ClientSession(slave_key="", env={}), []) == []
