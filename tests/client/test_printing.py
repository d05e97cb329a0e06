"""The client's printing device: on by default as in the original client, the original's
parameter, and the nxproxy option that points the printing channel at the local CUPS."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.client import settings
from qvd.client.devices import ClientSession, client_devices, nxproxy_options
from qvd.client.printing import Printing


def conf(**values: str) -> settings.ClientSettings:
    return settings.ClientSettings({k.replace("_", "."): v for k, v in values.items()})


def test_on_by_default_with_the_originals_parameter_and_cups_631() -> None:
    devices = client_devices(conf())
    printing = [d for d in devices if d.name == "printing"]
    assert len(printing) == 1
    session = ClientSession(slave_key="k", env={})
    assert printing[0].params() == {"qvd.client.printing.enabled": "1"}
    assert printing[0].open(session) == ["cups=631"]
    assert session.env == {}  # nothing else: no process, no environment
    printing[0].close()


def test_the_port_of_the_local_cups_comes_from_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "client.conf"
    path.write_text("client.printing.enable = 1\nclient.printing.port = 10631\n")
    device = Printing(settings.load(path))
    session = ClientSession(slave_key="k", env={}, slave_port=12345)
    assert nxproxy_options(session, device.open(session)) == ["cups=10631", "slave=12345"]


@pytest.mark.parametrize("off", ["0", "false", "no", "off"])
def test_off_sends_nothing_and_opens_no_channel(off: str) -> None:
    assert [d.name for d in client_devices(conf(client_printing_enable=off))] == [
        d.name for d in client_devices(conf()) if d.name != "printing"
    ]


@pytest.mark.parametrize("port", ["0", "65536", "631;ls", "-1", "localhost:631"])
def test_a_bad_port_is_refused_with_its_key(tmp_path: Path, port: str) -> None:
    path = tmp_path / "client.conf"
    path.write_text(f"client.printing.port = {port}\n")
    with pytest.raises(settings.SettingsError, match=r"client\.printing\.port"):
        settings.load(path)
