"""A hostile client asks for a USB/IP export without a busid (as the original QVD clients
do) and then sends, instead of a well-formed ``OP_REQ_EXPORT``: garbage, another code or
version, a short or oversized description, a bad busid, absurd numbers, a flood that
never ends, or nothing at all. The VMA's attach service (``qvd.vma.usb``, root in the
desktop) is run for real against a vhci-hcd directory in a temporary folder: each one
ends in an ``ERR`` with the reason within the handshake's time, a malformed request is
answered with a refusing ``OP_REP_EXPORT`` and the stream closed (silence and a short
request: closed), no more than the fixed-size request is read, nothing is written to
vhci-hcd's ``attach``, and the service goes on attaching the next, well-formed device."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.usb import UsbAttachService
from qvd.vma.usbip import EXPORT_REFUSED, export_reply, export_request
from tests.usbipdev import BUSID, EmulatedDevice
from tests.vma.test_usb_export import hand_over_export
from tests.vma.usbfakes import FakeVhci, attach_service, description
from tests.vma.usbfakes import vhci as vhci

HEAD = b"\x01\x11\x80\x06\0\0\0\0"  # version 0x0111, OP_REQ_EXPORT, status 0
FLOOD = 8 << 20


def offer(**changes: object) -> bytes:
    return HEAD + description(**changes).pack()


@pytest.fixture
def service(tmp_path: Path, vhci: FakeVhci) -> Iterator[UsbAttachService]:
    yield from attach_service(tmp_path, vhci, handshake_timeout=2.0)


REFUSED = export_reply(EXPORT_REFUSED)


@pytest.mark.parametrize(
    ("request_bytes", "reason", "reply"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 400, "not an OP_REQ_EXPORT", REFUSED),
        (b"\x01\x11\x80\x03" + offer()[4:], "not an OP_REQ_EXPORT", REFUSED),  # import code
        (b"\x01\x11\x00\x06" + offer()[4:], "not an OP_REQ_EXPORT", REFUSED),  # a reply
        (b"\x01\x06\x80\x06" + offer()[4:], "not an OP_REQ_EXPORT", REFUSED),  # version
        (offer(busid="1-1/../../x"), "not a USB bus id", REFUSED),
        (offer(busid="1-1\n"), "not a USB bus id", REFUSED),
        (offer(speed=0x7FFFFFFF), "bad device speed", REFUSED),
        (offer(busnum=0), "bus/device numbers", REFUSED),
        (offer(devnum=0xFFFFFFFF), "bus/device numbers", REFUSED),
        (offer()[:100], "closed the stream", b""),  # short
        (HEAD + b"\xff" * FLOOD, "not NUL-terminated", REFUSED),  # oversized, never ends
        (b"", "did not send its export request in time", b""),  # silence
    ],
)
def test_a_malformed_export_request_is_refused_and_bounded(
    service: UsbAttachService, vhci: FakeVhci, request_bytes: bytes, reason: str, reply: bytes
) -> None:
    ours, theirs = socket.socketpair()

    def hostile() -> None:
        try:
            if request_bytes:
                ours.sendall(request_bytes)
            if request_bytes and len(request_bytes) < FLOOD:
                ours.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the desktop closed its end: what we wanted

    sender = threading.Thread(target=hostile, daemon=True)
    sender.start()
    with theirs:
        control, answer = hand_over_export(service.path, theirs)
    control.close()
    assert answer.startswith("ERR "), answer
    assert reason in answer, answer
    sender.join(30)
    assert not sender.is_alive()  # the flood was cut: the desktop read no more than 320
    # what the client heard: the refusal (or nothing), then the end of the stream (a
    # reset when the desktop left the rest of a longer request unread)
    ours.settimeout(10)
    heard = b""
    with ours, contextlib.suppress(ConnectionResetError):
        while chunk := ours.recv(64):
            heard += chunk
    assert heard == reply
    assert vhci.attached == []
    assert (vhci.directory / "attach").read_text() == ""
    # the service is still there for a well-formed device
    good_ours, good_theirs = socket.socketpair()
    with good_ours:
        good_ours.sendall(export_request(EmulatedDevice().info(BUSID)))
        with good_theirs:
            control, answer = hand_over_export(service.path, good_theirs)
        control.close()
        assert answer.startswith("OK "), answer
        good_ours.settimeout(10)
        assert good_ours.recv(8) == export_reply(0)
    assert len(vhci.attached) == 1
