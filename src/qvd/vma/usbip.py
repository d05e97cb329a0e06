"""USB/IP: the wire format of the import handshake and the URB headers, the busid rule,
and the vhci-hcd sysfs files (Linux ``Documentation/usb/usbip_protocol.rst``).

The importer (the desktop's vhci-hcd) sends ``OP_REQ_IMPORT`` with the busid it wants;
the exporter (the client) answers ``OP_REP_IMPORT``: status 0 and the device's
description (path, busid, bus and device numbers, speed, ids, classes). After that the
same stream carries ``USBIP_CMD_SUBMIT``/``USBIP_RET_SUBMIT`` (and the unlinks) between
the kernel's vhci-hcd and the device: the desktop's user-space code parses only the
fixed-size handshake, never the URBs.

The original QVD clients run the other flavour, the exporter-initiated one (``usbip
connect``): the exporter (the client) sends ``OP_REQ_EXPORT`` with the same device
description, the importer answers ``OP_REP_EXPORT`` (a bare head: status 0 accepted,
anything else refused), and the URBs follow. Both flavours share one description parser.

Pure functions and frozen values (no I/O) except ``VhciHost``, which reads and writes
the vhci-hcd sysfs directory given to it. Standard library only (the VMA runs it).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUSID_SIZE",
    "CMD_SUBMIT",
    "CMD_UNLINK",
    "DEVICE_SIZE",
    "EXPORT_REFUSED",
    "EXPORT_REPLY_SIZE",
    "EXPORT_REQUEST_SIZE",
    "OP_HEAD_SIZE",
    "OP_REP_EXPORT",
    "OP_REP_IMPORT",
    "OP_REQ_EXPORT",
    "OP_REQ_IMPORT",
    "REPLY_HEAD_SIZE",
    "REQUEST_SIZE",
    "RET_SUBMIT",
    "RET_UNLINK",
    "SPEED_SUPER",
    "URB_HEAD_SIZE",
    "USBIP_VERSION",
    "UsbDeviceInfo",
    "UsbipError",
    "VhciHost",
    "VhciPort",
    "devid",
    "export_reply",
    "export_request",
    "free_port",
    "import_reply",
    "import_request",
    "parse_description",
    "parse_device",
    "parse_export_reply",
    "parse_export_request",
    "parse_export_request_head",
    "parse_import_reply_head",
    "parse_import_request",
    "parse_vhci_status",
    "valid_busid",
]

USBIP_VERSION = 0x0111
OP_REQ_IMPORT = 0x8003
OP_REP_IMPORT = 0x0003
OP_REQ_EXPORT = 0x8006  # exporter-initiated (``usbip connect``): the exporter speaks first
OP_REP_EXPORT = 0x0006
EXPORT_REFUSED = 1  # an OP_REP_EXPORT status other than 0 (as usbipd's ST_NA)
CMD_SUBMIT = 1
CMD_UNLINK = 2
RET_SUBMIT = 3
RET_UNLINK = 4
BUSID_SIZE = 32
PATH_SIZE = 256
_OP_HEAD = struct.Struct(">HHI")  # version, code, status
_DEVICE = struct.Struct(">256s32sIIIHHHBBBBBB")
DEVICE_SIZE = _DEVICE.size  # 312
REQUEST_SIZE = _OP_HEAD.size + BUSID_SIZE  # 40
REPLY_HEAD_SIZE = _OP_HEAD.size  # 8, then DEVICE_SIZE when the status is 0
OP_HEAD_SIZE = _OP_HEAD.size  # 8
EXPORT_REQUEST_SIZE = _OP_HEAD.size + DEVICE_SIZE  # 320: head, then the description
EXPORT_REPLY_SIZE = _OP_HEAD.size  # 8: the head alone
URB_HEAD_SIZE = 48
SPEED_SUPER = 5  # enum usb_device_speed: 1 low, 2 full, 3 high, 4 wireless, 5 super
_MAX_SPEED = 6  # super-plus
# A busid as the kernel names a USB device: <bus>-<port>[.<port>...] (e.g. 1-2, 3-1.4.2)
_BUSID = re.compile(r"[1-9][0-9]{0,2}-[1-9][0-9]{0,2}(\.[1-9][0-9]{0,2}){0,6}")
_VDEV_ST_NULL = 4  # a free vhci port (enum usbip_device_status)
_VDEV_ST_USED = 6


class UsbipError(ValueError):
    """A USB/IP message or value that is not acceptable (the reason is the message)."""


def valid_busid(busid: str) -> str:
    """``busid`` when it is a kernel USB bus id (``1-2``, ``3-1.4``); UsbipError else.
    Checked before any busid reaches a sysfs path or a protocol field."""
    if not _BUSID.fullmatch(busid):  # fullmatch: "\n" at the end is refused too
        raise UsbipError(f"not a USB bus id: {busid[:40]!r}")
    return busid


@dataclass(frozen=True, slots=True)
class UsbDeviceInfo:
    """The ``usbip_usb_device`` description an exporter sends in ``OP_REP_IMPORT``."""

    path: str
    busid: str
    busnum: int
    devnum: int
    speed: int
    id_vendor: int
    id_product: int
    bcd_device: int = 0
    device_class: int = 0
    device_subclass: int = 0
    device_protocol: int = 0
    configuration_value: int = 1
    num_configurations: int = 1
    num_interfaces: int = 1

    def pack(self) -> bytes:
        return _DEVICE.pack(
            self.path.encode()[: PATH_SIZE - 1], self.busid.encode()[: BUSID_SIZE - 1],
            self.busnum, self.devnum, self.speed, self.id_vendor, self.id_product,
            self.bcd_device, self.device_class, self.device_subclass, self.device_protocol,
            self.configuration_value, self.num_configurations, self.num_interfaces,
        )  # fmt: skip


def _c_string(raw: bytes, what: str) -> str:
    text, nul, _ = raw.partition(b"\0")
    if not nul:
        raise UsbipError(f"the {what} is not NUL-terminated")
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        raise UsbipError(f"the {what} is not ASCII") from None


def _op_status(data: bytes, code: int, name: str) -> int:
    """The status of the USB/IP operation head at the start of ``data``; UsbipError
    unless it is this version's ``code`` (``name`` says which, in the error)."""
    version, got, status = _OP_HEAD.unpack_from(data)
    if version != USBIP_VERSION or got != code:
        raise UsbipError(f"not an {name} (version {version:#06x}, code {got:#06x})")
    return int(status)


def devid(busnum: int, devnum: int) -> int:
    """The device id vhci-hcd is told at attach (``busnum << 16 | devnum``)."""
    return (busnum << 16) | devnum


def import_request(busid: str) -> bytes:
    """``OP_REQ_IMPORT`` for ``busid`` (validated)."""
    raw = valid_busid(busid).encode()
    return _OP_HEAD.pack(USBIP_VERSION, OP_REQ_IMPORT, 0) + raw.ljust(BUSID_SIZE, b"\0")


def parse_import_request(data: bytes) -> str:
    """The busid of an ``OP_REQ_IMPORT`` (exactly REQUEST_SIZE bytes)."""
    if len(data) != REQUEST_SIZE:
        raise UsbipError(f"OP_REQ_IMPORT is {REQUEST_SIZE} bytes, not {len(data)}")
    _op_status(data, OP_REQ_IMPORT, "OP_REQ_IMPORT")
    return valid_busid(_c_string(data[_OP_HEAD.size :], "busid"))


def import_reply(device: UsbDeviceInfo | None) -> bytes:
    """``OP_REP_IMPORT``: the device's description, or status 1 (refused) for None."""
    if device is None:
        return _OP_HEAD.pack(USBIP_VERSION, OP_REP_IMPORT, 1)
    return _OP_HEAD.pack(USBIP_VERSION, OP_REP_IMPORT, 0) + device.pack()


def parse_import_reply_head(data: bytes) -> None:
    """Check the 8-byte head of ``OP_REP_IMPORT``: UsbipError unless it is a success
    (the exporter's refusal included)."""
    if len(data) != REPLY_HEAD_SIZE:
        raise UsbipError(f"the OP_REP_IMPORT head is {REPLY_HEAD_SIZE} bytes, not {len(data)}")
    status = _op_status(data, OP_REP_IMPORT, "OP_REP_IMPORT")
    if status != 0:
        raise UsbipError(f"the client refused to export the device (status {status})")


def parse_description(data: bytes) -> UsbDeviceInfo:
    """A ``usbip_usb_device`` (exactly DEVICE_SIZE bytes), in either handshake: NUL-ended
    ASCII path and busid, a kernel bus id, and a speed and numbers vhci-hcd accepts."""
    if len(data) != DEVICE_SIZE:
        raise UsbipError(f"the device description is {DEVICE_SIZE} bytes, not {len(data)}")
    fields = _DEVICE.unpack(data)
    path = _c_string(fields[0], "device path")
    busid = valid_busid(_c_string(fields[1], "busid"))
    busnum, devnum, speed = fields[2], fields[3], fields[4]
    if not 0 < busnum < 1 << 16 or not 0 < devnum < 1 << 16:
        raise UsbipError(f"bad bus/device numbers {busnum}/{devnum}")
    if not 0 < speed <= _MAX_SPEED:
        raise UsbipError(f"bad device speed {speed}")
    return UsbDeviceInfo(path, busid, busnum, devnum, speed, *fields[5:])


def parse_device(data: bytes, busid: str) -> UsbDeviceInfo:
    """The description that follows a successful ``OP_REP_IMPORT`` head; it must name
    the busid that was asked for (and pass ``parse_description``)."""
    device = parse_description(data)
    if device.busid != busid:
        raise UsbipError(f"the client answered for busid {device.busid[:40]!r}, not {busid!r}")
    return device


def export_request(device: UsbDeviceInfo) -> bytes:
    """``OP_REQ_EXPORT``: what an exporter-initiated client (``usbip connect``) sends."""
    return _OP_HEAD.pack(USBIP_VERSION, OP_REQ_EXPORT, 0) + device.pack()


def parse_export_request_head(data: bytes) -> None:
    """Check the 8-byte head of ``OP_REQ_EXPORT`` (read before the description, so a
    stream that is not USB/IP is refused at once). Its status field is not looked at."""
    if len(data) != OP_HEAD_SIZE:
        raise UsbipError(f"the OP_REQ_EXPORT head is {OP_HEAD_SIZE} bytes, not {len(data)}")
    _op_status(data, OP_REQ_EXPORT, "OP_REQ_EXPORT")


def parse_export_request(data: bytes) -> UsbDeviceInfo:
    """The device an ``OP_REQ_EXPORT`` (exactly EXPORT_REQUEST_SIZE bytes) offers."""
    if len(data) != EXPORT_REQUEST_SIZE:
        raise UsbipError(f"OP_REQ_EXPORT is {EXPORT_REQUEST_SIZE} bytes, not {len(data)}")
    parse_export_request_head(data[:OP_HEAD_SIZE])
    return parse_description(data[OP_HEAD_SIZE:])


def export_reply(status: int = 0) -> bytes:
    """``OP_REP_EXPORT``: status 0 (accepted: the URBs follow) or a refusal."""
    return _OP_HEAD.pack(USBIP_VERSION, OP_REP_EXPORT, status)


def parse_export_reply(data: bytes) -> None:
    """Check an ``OP_REP_EXPORT``: UsbipError unless it accepts the device."""
    if len(data) != EXPORT_REPLY_SIZE:
        raise UsbipError(f"OP_REP_EXPORT is {EXPORT_REPLY_SIZE} bytes, not {len(data)}")
    status = _op_status(data, OP_REP_EXPORT, "OP_REP_EXPORT")
    if status != 0:
        raise UsbipError(f"the desktop refused the device (status {status})")


@dataclass(frozen=True, slots=True)
class VhciPort:
    """One line of vhci-hcd's ``status``."""

    hub: str  # "hs" (low/full/high speed devices) or "ss" (super speed)
    port: int
    status: int
    local_busid: str  # the device's name in the guest once attached ("0-0" when free)

    @property
    def free(self) -> bool:
        return self.status == _VDEV_ST_NULL

    @property
    def used(self) -> bool:
        return self.status == _VDEV_ST_USED


def parse_vhci_status(text: str) -> list[VhciPort]:
    """The ports of a vhci-hcd ``status`` file (``hub port sta spd dev sockfd
    local_busid``); lines that do not parse are skipped."""
    ports = []
    for line in text.splitlines():
        words = line.split()
        if len(words) != 7 or words[0] not in ("hs", "ss"):
            continue
        if not words[1].isdigit() or not words[2].isdigit():
            continue
        ports.append(VhciPort(words[0], int(words[1]), int(words[2]), words[6]))
    return ports


def free_port(ports: list[VhciPort], speed: int) -> int | None:
    """The first free port of the hub that fits ``speed`` (as ``usbip attach``)."""
    hub = "ss" if speed >= SPEED_SUPER else "hs"
    for port in ports:
        if port.hub == hub and port.free:
            return port.port
    return None


class VhciHost:
    """The sysfs directory of vhci-hcd (``/sys/devices/platform/vhci_hcd.0``, or a test's
    directory): its ports, attach and detach. Writing needs root in the guest."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def present(self) -> bool:
        return (self.directory / "attach").exists()

    def ports(self) -> list[VhciPort]:
        return parse_vhci_status((self.directory / "status").read_text(encoding="ascii"))

    def port(self, number: int) -> VhciPort | None:
        return next((p for p in self.ports() if p.port == number), None)

    def attach(self, port: int, sockfd: int, device: UsbDeviceInfo) -> None:
        """Hand the socket ``sockfd`` (of this process) to vhci-hcd on ``port``."""
        line = f"{port} {sockfd} {devid(device.busnum, device.devnum)} {device.speed}"
        self._write("attach", line)

    def detach(self, port: int) -> None:
        self._write("detach", str(port))

    def _write(self, name: str, line: str) -> None:
        with open(self.directory / name, "w", encoding="ascii") as fh:
            fh.write(line)
