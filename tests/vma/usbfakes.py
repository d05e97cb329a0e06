"""A vhci-hcd sysfs directory in a temporary folder, for the VMA's USB code on a machine
without the module: ``status`` as the kernel writes it, and an ``attach`` that records
what was written and marks the port used (with the guest's name of the device), as the
kernel does once it accepted the socket; ``vhci``, the fixture of one; ``attach_service``,
the VMA's attach service over it for the session's user; ``description``, a device
description with fields to change."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.usb import HANDSHAKE_TIMEOUT, UsbAttachService
from qvd.vma.usbip import UsbDeviceInfo, VhciHost, devid
from tests.usbipdev import BUSID

__all__ = ["HS_PORTS", "USER_UID", "FakeVhci", "attach_service", "description", "vhci"]

HS_PORTS = 8
USER_UID = 65534  # the session's user (nobody); the tests run as root
_HEADER = "hub port sta spd dev      sockfd local_busid\n"


class FakeVhci(VhciHost):
    def __init__(self, root: Path) -> None:
        directory = root / "vhci_hcd.0"
        directory.mkdir(parents=True)
        super().__init__(directory)
        self.usb_devices = root / "usb-devices"
        self.dev_usb = root / "dev-bus-usb"
        self.usb_devices.mkdir()
        self.dev_usb.mkdir()
        self.attached: list[tuple[int, int, int, int]] = []  # port, devid, speed, peer ino
        self.detached: list[int] = []
        self.held: list[socket.socket] = []  # the kernel's reference to each socket
        self.used: dict[int, str] = {}
        (directory / "attach").write_text("")
        (directory / "detach").write_text("")
        self._write_status()

    def _write_status(self) -> None:
        lines = [_HEADER]
        for hub, base in (("hs", 0), ("ss", HS_PORTS)):
            for i in range(HS_PORTS):
                port = base + i
                if port in self.used:
                    lines.append(f"{hub}  {port:04d} 006 003 00070002 000000 {self.used[port]}\n")
                else:
                    lines.append(f"{hub}  {port:04d} 004 000 00000000 000000 0-0\n")
        (self.directory / "status").write_text("".join(lines))

    def attach(self, port: int, sockfd: int, device: UsbDeviceInfo) -> None:
        super().attach(port, sockfd, device)
        line = (self.directory / "attach").read_text().split()
        assert [int(w) for w in line] == [port, sockfd, devid(device.busnum, device.devnum),
                                          device.speed]  # fmt: skip
        self.held.append(socket.socket(fileno=os.dup(sockfd)))
        self.attached.append((port, int(line[2]), device.speed, os.fstat(sockfd).st_ino))
        name = f"3-{port + 1}"
        (self.usb_devices / name).mkdir()
        (self.usb_devices / name / "busnum").write_text("3\n")
        (self.usb_devices / name / "devnum").write_text(f"{port + 2}\n")
        (self.dev_usb / "003").mkdir(exist_ok=True)
        node = self.dev_usb / "003" / f"{port + 2:03d}"
        node.write_text("")
        node.chmod(0o664)
        self.used[port] = name
        self._write_status()

    def detach(self, port: int) -> None:
        super().detach(port)
        self.detached.append(port)
        self.free(port)

    def close(self) -> None:
        for sock in self.held:
            sock.close()

    def free(self, port: int) -> None:
        """The kernel let the port go (the stream ended)."""
        self.used.pop(port, None)
        self._write_status()


@pytest.fixture
def vhci(tmp_path: Path) -> Iterator[FakeVhci]:
    """A fake vhci-hcd under ``tmp_path/sys``, closed at the end."""
    fake = FakeVhci(tmp_path / "sys")
    yield fake
    fake.close()


def attach_service(
    tmp_path: Path, vhci: FakeVhci, handshake_timeout: float = HANDSHAKE_TIMEOUT
) -> Iterator[UsbAttachService]:
    """The attach service for USER_UID over ``vhci``, closed at the end: ``yield from``
    it in a fixture."""
    svc = UsbAttachService(tmp_path / "usbip.sock", USER_UID, USER_UID, vhci,
                           usb_devices=vhci.usb_devices, dev_usb=vhci.dev_usb,
                           handshake_timeout=handshake_timeout)  # fmt: skip
    try:
        yield svc
    finally:
        svc.close()


def description(**changes: object) -> UsbDeviceInfo:
    """A valid device description (tests/usbipdev.py's BUSID) with ``changes``."""
    fields: dict[str, object] = {"path": "/p", "busid": BUSID, "busnum": 7, "devnum": 2,
                                 "speed": 3, "id_vendor": 1, "id_product": 2}  # fmt: skip
    fields.update(changes)
    return UsbDeviceInfo(**fields)  # type: ignore[arg-type]
