"""The original QVD clients' USB: ``POST /usbip`` without ``X-QVD-USB-Busid``, then the
exporter-initiated handshake (``OP_REQ_EXPORT`` from the client, ``OP_REP_EXPORT`` from
the desktop). The VMA's attach service (``qvd.vma.usb``) in its ``EXPORT`` mode against a
vhci-hcd directory in a temporary folder (``tests/vma/usbfakes.py``), and the whole path
through the real ``qvd-vma-slave`` with an emulated original client
(``tests/usbipdev.py``'s ``OriginalClientExport``)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.slaveproto import UsbRequest, decide, parse_head
from qvd.vma.usb import UsbAttachService, accept_export
from qvd.vma.usbip import (
    EXPORT_REFUSED,
    UsbDeviceInfo,
    UsbipError,
    export_reply,
    export_request,
)
from tests.usbipdev import (
    BUSID,
    PRODUCT_ID,
    VENDOR_ID,
    EmulatedDevice,
    OriginalClientExport,
    get_descriptor,
    original_usb_request,
)
from tests.vma.test_usb_service import read_line, wait_until
from tests.vma.usbfakes import HS_PORTS, USER_UID, FakeVhci, attach_service
from tests.vma.usbfakes import vhci as vhci

KEY = "Qw3" * 21 + "z"


@pytest.fixture
def service(tmp_path: Path, vhci: FakeVhci) -> Iterator[UsbAttachService]:
    yield from attach_service(tmp_path, vhci, handshake_timeout=5.0)


def hand_over_export(path: Path, channel: socket.socket) -> tuple[socket.socket, str]:
    """The slave program's side for a request without a busid: READY, then EXPORT with
    the channel; the service's answer."""
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.connect(str(path))
    assert read_line(control) == "READY"
    socket.send_fds(control, [b"EXPORT\n"], [channel.fileno()])
    return control, read_line(control)


def test_a_request_without_a_busid_is_an_export() -> None:
    assert decide(parse_head(original_usb_request(KEY)), KEY) == UsbRequest(None)


def test_accept_export_reads_the_fixed_request_only() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(export_request(EmulatedDevice().info(BUSID)) + b"URBs follow")
        device = accept_export(theirs, timeout=5)
        assert (device.busid, device.id_vendor, device.speed) == (BUSID, VENDOR_ID, 3)
        ours.setblocking(False)
        with pytest.raises(BlockingIOError):
            ours.recv(8)  # no reply yet: the acceptance waits for a free port
        assert theirs.recv(100) == b"URBs follow"  # nothing past the 320 bytes was read


def test_accept_export_refuses_a_bad_description_with_a_status() -> None:
    bad = UsbDeviceInfo(path="/p", busid=BUSID, busnum=7, devnum=2, speed=99, id_vendor=1,
                        id_product=2)  # fmt: skip
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(export_request(bad))
        with pytest.raises(UsbipError, match="bad device speed 99"):
            accept_export(theirs, timeout=5)
        assert ours.recv(8) == export_reply(EXPORT_REFUSED)


def test_an_exported_device_is_accepted_before_the_attach(
    service: UsbAttachService, vhci: FakeVhci, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OP_REP_EXPORT status 0 is in the client's socket when vhci-hcd's attach file is
    written (after it the kernel owns the stream); the node goes to the session's user."""
    ours, theirs = socket.socketpair()
    in_buffer_at_attach: list[bytes] = []
    real_attach = vhci.attach

    def attach(port: int, sockfd: int, device: UsbDeviceInfo) -> None:
        in_buffer_at_attach.append(ours.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        real_attach(port, sockfd, device)

    monkeypatch.setattr(vhci, "attach", attach)
    ours.sendall(export_request(EmulatedDevice().info(BUSID)))
    with theirs:
        control, answer = hand_over_export(service.path, theirs)
    assert answer == f"OK 0 {VENDOR_ID:04x}:{PRODUCT_ID:04x}"
    assert in_buffer_at_attach == [export_reply(0)]
    ((port, dev, speed, _ino),) = vhci.attached
    assert (port, dev, speed) == (0, 7 << 16 | 2, 3)
    node = vhci.dev_usb / "003" / "002"
    wait_until(lambda: node.stat().st_uid == USER_UID, "the node given to the user")
    assert node.stat().st_mode & 0o777 == 0o600
    service.detach_all()  # suspend
    assert vhci.detached == [0]
    assert read_line(control) == ""  # the slave program's wait ends
    control.close()
    ours.close()


def test_no_free_port_is_a_refusal_status(service: UsbAttachService, vhci: FakeVhci) -> None:
    vhci.used.update({port: f"3-{port + 1}" for port in range(HS_PORTS)})  # every hs port
    vhci._write_status()
    ours, theirs = socket.socketpair()
    with ours:
        ours.sendall(export_request(EmulatedDevice().info(BUSID)))  # high speed: hs hub
        with theirs:
            control, answer = hand_over_export(service.path, theirs)
        control.close()
        assert answer == "ERR no free vhci-hcd port for the device's speed"
        ours.settimeout(10)
        assert ours.recv(8) == export_reply(EXPORT_REFUSED)
        assert ours.recv(8) == b""  # and the desktop closed the stream
    assert vhci.attached == []


def test_an_original_client_through_the_real_slave_program_and_attach_service(
    tmp_path: Path, service: UsbAttachService, vhci: FakeVhci
) -> None:
    """An original client (no busid; ``usbip connect``'s handshake) → a loopback
    "nxproxy" → the real ``qvd-vma-slave`` with the socket on its stdin and stdout → the
    attach service → a vhci-hcd directory in a temporary folder: attached on the right
    port and speed, the URBs reach the client's device, suspend detaches and ends the
    slave program."""
    from tests.client.test_shares import SlaveListener

    key_file = tmp_path / "slave-key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    (tmp_path / "home").mkdir()
    # the slave program finds the service's socket beside the key file
    assert service.path.parent == key_file.parent
    listener = SlaveListener(key_file, tmp_path / "home")
    client = OriginalClientExport(listener.port, KEY)
    try:
        assert client.read_response() == 101, client.response_head
        assert client.export() == 0
        wait_until(lambda: bool(vhci.attached), "vhci-hcd's attach written")
        ((port, dev, speed, _ino),) = vhci.attached
        assert (port, dev, speed) == (0, 7 << 16 | 2, 3)  # the client's devid, high speed
        held = vhci.held[0]  # what vhci-hcd reads: the client's device, through the slave
        device_descriptor = get_descriptor(held, 5, 1, 18)
        assert device_descriptor[8:12] == struct.pack("<HH", VENDOR_ID, PRODUCT_ID)
        assert get_descriptor(held, 6, 2, 9)[:2] == b"\x09\x02"
        node = vhci.dev_usb / "003" / "002"
        wait_until(lambda: node.stat().st_uid == USER_UID, "the node given to the user")
        wait_until(lambda: bool(listener.procs), "the slave program started")
        slave = listener.procs[0]
        assert slave.poll() is None  # it waits while the device is attached
        service.detach_all()  # the session is suspended
        assert vhci.detached == [0]
        assert slave.wait(20) == 0
    finally:
        client.close()
        listener.close()
