"""A hostile client answers the desktop's OP_REQ_IMPORT with garbage: a wrong head, a
refusal, a description for another device, absurd numbers, a flood that never ends, or
nothing at all. The VMA's attach service (``qvd.vma.usb``, root in the desktop) is run
for real against a vhci-hcd directory in a temporary folder: each one ends in an
``ERR`` with the reason within the handshake's time, reads no more than the fixed-size
reply, writes nothing to vhci-hcd's ``attach``, and the service goes on attaching the
next, well-formed device. (After the handshake the URBs go to the guest's kernel; the
VMA parses none.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.usb import UsbAttachService
from qvd.vma.usbip import import_reply
from tests.usbipdev import BUSID, EmulatedDevice
from tests.vma.test_usb_service import client_side, hand_over
from tests.vma.usbfakes import FakeVhci, attach_service, description
from tests.vma.usbfakes import vhci as vhci

GOOD = EmulatedDevice().info(BUSID)


def other(**changes: object) -> bytes:
    return b"\x01\x11\x00\x03\0\0\0\0" + description(**changes).pack()


@pytest.fixture
def service(tmp_path: Path, vhci: FakeVhci) -> Iterator[UsbAttachService]:
    yield from attach_service(tmp_path, vhci, handshake_timeout=2.0)


FLOOD = 8 << 20


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 400, "not an OP_REP_IMPORT"),
        (import_reply(None), "refused to export"),
        (other(busid="1-1"), "answered for busid '1-1'"),
        (other(speed=0x7FFFFFFF), "bad device speed"),
        (other(busnum=0), "bus/device numbers"),
        (other()[:100], "closed the stream"),
        (b"\x01\x11\x00\x03\0\0\0\0" + b"\xff" * FLOOD, "not NUL-terminated"),
        (b"", "in time"),  # silence
    ],
)
def test_a_malformed_import_reply_is_refused_and_bounded(
    service: UsbAttachService, vhci: FakeVhci, reply: bytes, reason: str
) -> None:
    ours, theirs = socket.socketpair()
    read_by_us = 0

    def hostile() -> None:
        nonlocal read_by_us
        ours.recv(40)
        try:
            if reply:
                ours.sendall(reply)
            if reply and reply != b"\x01\x11\x00\x03\0\0\0\0" + b"\xff" * FLOOD:
                ours.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the desktop closed its end: what we wanted

    sender = threading.Thread(target=hostile, daemon=True)
    sender.start()
    started = time.monotonic()
    with theirs:
        control, answer = hand_over(service.path, BUSID, theirs)
    took = time.monotonic() - started
    control.close()
    assert answer.startswith("ERR "), answer
    assert reason in answer, answer
    assert took < 30  # the handshake's bound (2 s here) plus slack, never a hang
    assert vhci.attached == []
    assert (vhci.directory / "attach").read_text() == ""
    sender.join(30)
    ours.close()
    # the service is still there for a well-formed device
    good_ours, good_theirs = socket.socketpair()
    client_side(good_ours, EmulatedDevice())
    with good_theirs:
        control, answer = hand_over(service.path, BUSID, good_theirs)
    control.close()
    assert answer.startswith("OK "), answer
    assert len(vhci.attached) == 1
