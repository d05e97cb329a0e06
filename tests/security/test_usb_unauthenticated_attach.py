"""Another process on the client machine (or anything reaching nxproxy's slave port)
asks the desktop to attach a USB device without the session's slave key, with a wrong
one, with the wrong method or without the upgrade. The real ``qvd-vma-slave`` refuses
each before it looks at vhci-hcd or reaches the VMA's attach service (which listens
here on the session's socket, ready to attach)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.usb import UsbAttachService
from tests.vma.test_slave import KEY, run_slave, status
from tests.vma.test_slave import key_file as key_file
from tests.vma.usbfakes import FakeVhci


@pytest.fixture
def service(key_file: Path, tmp_path: Path) -> Iterator[tuple[UsbAttachService, FakeVhci]]:
    vhci = FakeVhci(tmp_path / "sys")
    svc = UsbAttachService(key_file.parent / "usbip.sock", 0, 0, vhci)
    yield svc, vhci
    svc.close()
    vhci.close()


def request(auth: str | None, method: str = "POST", upgrade: str | None = "qvd:usbip/1.0") -> bytes:
    lines = [f"{method} /usbip HTTP/1.1"]
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    if upgrade is not None:
        lines += ["Connection: Upgrade", f"Upgrade: {upgrade}"]
    lines.append("X-QVD-USB-Busid: 1-1")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (request(None), 401),
        (request("Basic "), 401),
        (request(f"Basic {KEY[:-1]}y"), 401),
        (request(f"Bearer {KEY}"), 401),
        (request(f"Basic {KEY}", method="GET"), 405),
        (request(f"Basic {KEY}", upgrade=None), 426),
        (request(f"Basic {KEY}", upgrade="qvd:sftp/1.0"), 400),
    ],
)
def test_unauthenticated_or_malformed_usbip_requests_are_refused(
    data: bytes, expected: int, key_file: Path, tmp_path: Path,
    service: tuple[UsbAttachService, FakeVhci],
) -> None:  # fmt: skip
    _svc, vhci = service
    answer, code = run_slave(data, key_file, tmp_path)
    assert status(answer) == expected, answer
    assert b"101" not in answer.split(b"\r\n", 1)[0]
    assert code == 1
    assert vhci.attached == []
