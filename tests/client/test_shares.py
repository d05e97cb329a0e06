"""The client's shared folders and USB: settings, request bytes, and the slave requests
answered by the real desktop-side slave program (``qvd.vma.slave``) run per connection,
as nxagent runs it, behind a loopback listener that stands in for nxproxy's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.client import settings
from qvd.client.devices import ClientSession, client_devices
from qvd.client.shares import Share, SharesDevice, parse_share, share_request, shares_of
from qvd.client.slave import SlaveRefused, upgrade
from qvd.client.usb import UsbDevice, UsbipHostExporter, usb_request, use_exporter
from qvd.vma.slave import VHCI_DIR
from qvd.vma.slaveproto import ShareRequest, UsbRequest, decide, parse_head
from tests.usbipdev import EmulatedExporter

KEY = "aB3" * 21 + "z"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/srv/docs", Share(Path("/srv/docs"))),
        ("/srv/docs/", Share(Path("/srv/docs"))),
        ("/srv/docs;ro", Share(Path("/srv/docs"), read_only=True)),
        ("/srv/docs ; RW", Share(Path("/srv/docs"))),
        ("/srv/a;b;ro", Share(Path("/srv/a;b"), read_only=True)),
        ("/srv/My Docs", Share(Path("/srv/My Docs"))),
    ],
)
def test_share_syntax(value: str, expected: Share) -> None:
    assert parse_share(value) == expected


def test_home_relative_share(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_share("~/Documents;ro") == Share(tmp_path / "Documents", read_only=True)


@pytest.mark.parametrize(
    "value", ["", ";ro", "docs", "./docs", "/srv/docs;rx", "/", "/srv/a\x01b", "/srv/" + "a" * 65]
)
def test_bad_shares_are_refused_with_the_reason(value: str) -> None:
    with pytest.raises(settings.SettingsError, match="share"):
        parse_share(value)


def test_the_settings_file_holds_shares(tmp_path: Path) -> None:
    conf = tmp_path / "client.conf"
    conf.write_text(
        "client.share.2 = /srv/two;ro\nclient.share.1 = /srv/one\nclient.share.10 = /srv/ten\n"
    )
    loaded = settings.load(conf)
    assert [s.folder.name for s in shares_of(loaded)] == ["one", "two", "ten"]
    devices = client_devices(loaded)
    assert [d.name for d in devices if d.name not in ("printing", "desktop-shares")] == ["shares"]
    conf.write_text("client.share.1 = relative/path\n")
    with pytest.raises(settings.SettingsError, match="line 1"):
        settings.load(conf)


def test_registry_follows_the_switches() -> None:
    def names(values: dict[str, str]) -> list[str]:
        devices = client_devices(settings.ClientSettings(values))
        # printing and desktop-shares (the reverse direction): their own tests
        return [d.name for d in devices if d.name not in ("printing", "desktop-shares")]

    assert names({}) == []
    assert names({"client.share.1": "/srv/x"}) == ["shares"]
    assert names({"client.share.1": "/srv/x", "client.file_sharing.enable": "0"}) == []
    assert names({"client.usb.enable": "1"}) == ["usb"]
    usb = UsbDevice()
    assert usb.params() == {"qvd.client.usb.enabled": "1", "qvd.client.usb.implementation": "USBIP"}


def test_requests_are_what_the_desktop_accepts() -> None:
    share = Share(Path("/srv/My Docs/été"), read_only=True)
    raw = share_request(share, KEY)
    assert raw.startswith(b"PUT /shares/%C3%A9t%C3%A9 HTTP/1.1\r\n")
    assert f"Authorization: Basic {KEY}\r\n".encode() in raw
    assert b"Upgrade: qvd:sftp/1.0\r\n" in raw
    assert decide(parse_head(raw), KEY) == ShareRequest(name="été")
    assert decide(parse_head(usb_request(KEY, "1-1")), KEY) == UsbRequest("1-1")


# --- against the real slave program -----------------------------------------------------


class SlaveListener:
    """A loopback listener that runs ``qvd.vma.slave`` for each connection with the
    socket on its stdin/stdout (nxagent does this for each client→VM slave connection)."""

    def __init__(self, key_file: Path, home: Path) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                    "HOME": str(home), "QVD_SLAVE_KEY_FILE": str(key_file)}  # fmt: skip
        self.procs: list[subprocess.Popen[bytes]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.procs.append(
                    subprocess.Popen([sys.executable, "-m", "qvd.vma.slave"], stdin=conn,
                                     stdout=conn, stderr=subprocess.DEVNULL, env=self.env)
                )  # fmt: skip

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[SlaveListener]:
    key_file = tmp_path / "slave-key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    (tmp_path / "home").mkdir()
    served = SlaveListener(key_file, tmp_path / "home")
    yield served
    served.close()


def test_a_wrong_key_is_refused_with_the_desktops_reason(listener: SlaveListener) -> None:
    share = Share(Path("/srv/docs"))
    with pytest.raises(SlaveRefused) as refused:
        upgrade(listener.port, share_request(share, "not-the-key"), timeout=10)
    assert refused.value.status == 401
    assert "slave key" in str(refused.value)


def test_upgrade_waits_for_the_listener(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with pytest.raises(ConnectionError, match="did not answer"):
        upgrade(port, usb_request(KEY, "1-1"), timeout=1)


@pytest.mark.skipif(VHCI_DIR.exists(), reason="vhci-hcd is loaded on this machine")
def test_usb_refusal_is_printed_and_the_session_goes_on(
    listener: SlaveListener, capsys: pytest.CaptureFixture[str]
) -> None:
    session = ClientSession(slave_key=KEY, env={}, slave_port=listener.port)
    use_exporter(lambda: EmulatedExporter("1-1"))  # the device exists on the client
    try:
        device = UsbDevice(settings.ClientSettings({"client.usb.share.1": "1-1"}))
        device.attached(session)  # returns: the session goes on
    finally:
        use_exporter(UsbipHostExporter)
    device.close()
    err = capsys.readouterr().err
    assert "USB refused by the desktop (503)" in err
    assert "the vhci-hcd kernel module is not loaded" in err


def test_a_share_without_slave_channel_or_folder_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listener: SlaveListener
) -> None:
    device = SharesDevice([Share(tmp_path / "missing")])
    assert device.open(ClientSession(slave_key=KEY, env={}, slave_port=None)) == []
    assert "no slave channel" in capsys.readouterr().err
    device.attached(ClientSession(slave_key=KEY, env={}, slave_port=listener.port))
    assert "not a directory" in capsys.readouterr().err
    device.close()
