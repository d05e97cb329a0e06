"""The client's settings and device for desktop folders opened on the client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qvd.client import settings
from qvd.client.desktopshares import DesktopSharesDevice, launcher_script
from qvd.client.devices import ClientSession, client_devices
from qvd.client.shares import shares_of
from qvd.client.slaveserver import ENV_BASE, ENV_ENABLED, ENV_KEY, base_dir


def test_settings_are_checked() -> None:
    assert settings.check("client.share.from_desktop.enable", "1") == "1"
    assert settings.check("client.share.from_desktop.path", "~/Desktops") == "~/Desktops"
    for key, bad in (
        ("client.share.from_desktop.enable", "maybe"),
        ("client.share.from_desktop.path", "relative/dir"),
    ):
        with pytest.raises(settings.SettingsError):
            settings.check(key, bad)


def test_the_reverse_keys_are_not_shares() -> None:
    conf = settings.ClientSettings(
        {"client.share.from_desktop.enable": "1", "client.share.1": "/tmp"}
    )
    assert [share.folder for share in shares_of(conf)] == [Path("/tmp")]


def test_the_default_base_is_in_home() -> None:
    assert base_dir(None) == os.path.expanduser("~/QVD")
    with pytest.raises(ValueError, match="absolute"):
        base_dir("rel")


def test_off_by_default_but_present_to_say_why() -> None:
    devices = client_devices(settings.ClientSettings({}))
    reverse = [d for d in devices if isinstance(d, DesktopSharesDevice)]
    assert len(reverse) == 1
    assert reverse[0].enabled is False
    off = settings.ClientSettings({"client.slave.enable": "0"})
    assert not any(isinstance(d, DesktopSharesDevice) for d in client_devices(off))


def test_open_puts_the_key_in_the_environment_not_the_command(tmp_path: Path) -> None:
    conf = settings.ClientSettings(
        {"client.share.from_desktop.enable": "1", "client.share.from_desktop.path": str(tmp_path)}
    )
    device = DesktopSharesDevice(conf)
    session = ClientSession(slave_key="the-key", env={}, slave_port=None)
    try:
        assert device.open(session) == []
        launcher = Path(session.env["NX_SLAVE_CMD"])
        assert (session.env[ENV_KEY], session.env[ENV_ENABLED]) == ("the-key", "1")
        assert session.env[ENV_BASE] == str(tmp_path)
        assert "the-key" not in launcher.read_text()
        assert launcher.stat().st_mode & 0o777 == 0o700
        assert launcher.parent.stat().st_mode & 0o777 == 0o700
        # the launcher runs this qvd's server: without a request it refuses (400)
        done = subprocess.run([str(launcher)], input=b"", capture_output=True,
                              env={**session.env, "PATH": os.environ["PATH"]},
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 1
        assert b"400 Bad Request" in done.stdout
    finally:
        device.close()
    assert not launcher.exists()


def test_no_slave_key_no_server() -> None:
    device = DesktopSharesDevice(settings.ClientSettings({}))
    session = ClientSession(slave_key="", env={}, slave_port=None)
    assert device.open(session) == []
    assert "NX_SLAVE_CMD" not in session.env
    device.close()


def test_launcher_quotes_its_paths() -> None:
    script = launcher_script(sys.executable, "/odd dir/$(x)")
    assert "'/odd dir/$(x)'" in script
