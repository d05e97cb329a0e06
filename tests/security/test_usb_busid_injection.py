"""A busid is the one value of the client that reaches vhci-hcd's sysfs (as a protocol
field and a device name): a hostile client or session user sends one that climbs out of
sysfs, adds words to the ``attach`` line or ends a line early. The real
``qvd-vma-slave`` refuses it in the request head (400, before anything else runs), the
VMA's attach service refuses it in the ``ATTACH`` line (nothing written to vhci-hcd),
and the client refuses it in its settings."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from qvd.client import settings
from qvd.client.settings import SettingsError
from qvd.vma.usb import UsbAttachService
from tests.vma.test_slave import KEY, body, run_slave, status
from tests.vma.test_slave import key_file as key_file
from tests.vma.test_usb_service import read_line
from tests.vma.usbfakes import FakeVhci
from tests.vma.usbfakes import vhci as vhci

HOSTILE = [
    "../../../../devices/platform/vhci_hcd.0",
    "1-1 3 65537 3",  # extra words for the attach line
    "1-1\t0",
    "1-1/../../x",
    "1-1.%2e%2e",
    "0-0",
    "1" * 200,
]


def usbip(busid: str) -> bytes:
    return (f"POST /usbip HTTP/1.1\r\nAuthorization: Basic {KEY}\r\nConnection: Upgrade\r\n"
            f"Upgrade: qvd:usbip/1.0\r\nX-QVD-USB-Busid: {busid}\r\n\r\n").encode()  # fmt: skip


@pytest.mark.parametrize("busid", HOSTILE)
def test_the_slave_program_refuses_a_hostile_busid(
    busid: str, key_file: Path, tmp_path: Path
) -> None:
    answer, code = run_slave(usbip(busid), key_file, tmp_path)
    assert status(answer) == 400, answer
    assert body(answer).startswith("X-QVD-USB-Busid: not a USB bus id"), answer
    assert code == 1


@pytest.mark.parametrize("busid", [*HOSTILE[:1], "1-1\n3", "1-1 3"])
def test_the_attach_service_refuses_a_hostile_busid(
    busid: str, vhci: FakeVhci, tmp_path: Path
) -> None:
    svc = UsbAttachService(tmp_path / "usbip.sock", 65534, 65534, vhci)
    ours, theirs = socket.socketpair()
    try:
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.connect(str(svc.path))
        assert read_line(control) == "READY"
        socket.send_fds(control, [f"ATTACH {busid}\n".encode()], [theirs.fileno()])
        answer = read_line(control)
        control.close()
        assert answer.startswith("ERR "), answer
        ours.settimeout(0.5)
        with pytest.raises(TimeoutError):
            ours.recv(1)  # no import request was sent for it
        assert (vhci.directory / "attach").read_text() == ""
    finally:
        ours.close()
        theirs.close()
        svc.close()


@pytest.mark.parametrize("busid", HOSTILE)
def test_the_client_refuses_a_hostile_busid_in_its_settings(busid: str) -> None:
    with pytest.raises(SettingsError):
        settings.check("client.usb.share.1", busid)
