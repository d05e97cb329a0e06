"""The USB/IP wire format (``qvd.vma.usbip``): the import handshake both ways, the busid
rule, vhci-hcd's status file and its port choice."""

from __future__ import annotations

import struct

import pytest

from qvd.vma.usbip import (
    DEVICE_SIZE,
    REQUEST_SIZE,
    UsbDeviceInfo,
    UsbipError,
    devid,
    free_port,
    import_reply,
    import_request,
    parse_device,
    parse_import_reply_head,
    parse_import_request,
    parse_vhci_status,
    valid_busid,
)

DEVICE = UsbDeviceInfo(path="/sys/devices/pci0000:00/usb1/1-2", busid="1-2", busnum=1,
                       devnum=5, speed=3, id_vendor=0x046D, id_product=0xC52B,
                       bcd_device=0x1201, num_interfaces=3)  # fmt: skip

STATUS = """hub port sta spd dev      sockfd local_busid
hs  0000 006 003 00010005 000003 3-1
hs  0001 004 000 00000000 000000 0-0
ss  0002 004 000 00000000 000000 0-0
ss  0003 004 000 00000000 000000 0-0
"""


@pytest.mark.parametrize("busid", ["1-1", "3-1.4", "12-3.4.5.6", "127-15"])
def test_busids(busid: str) -> None:
    assert valid_busid(busid) == busid


@pytest.mark.parametrize(
    "busid",
    ["", "1", "0-1", "1-0", "1-1.", "a-1", "1-1/../x", "../1-1", "1-1\n", "1-1 2 3",
     "1-1\x00", "usb1", "1-1:1.0", "1234-1", "1-1." + ".".join(["1"] * 7)],
)  # fmt: skip
def test_bad_busids(busid: str) -> None:
    with pytest.raises(UsbipError, match="not a USB bus id"):
        valid_busid(busid)


def test_the_import_request() -> None:
    data = import_request("1-2")
    assert len(data) == REQUEST_SIZE == 40
    assert data[:8] == b"\x01\x11\x80\x03\x00\x00\x00\x00"
    assert data[8:] == b"1-2".ljust(32, b"\0")
    assert parse_import_request(data) == "1-2"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x01\x11\x80\x03" + b"\0" * 35, "40 bytes"),
        (b"\x01\x11\x80\x05\0\0\0\0" + b"1-2".ljust(32, b"\0"), "not an OP_REQ_IMPORT"),
        (b"\x01\x06\x80\x03\0\0\0\0" + b"1-2".ljust(32, b"\0"), "not an OP_REQ_IMPORT"),
        (b"\x01\x11\x80\x03\0\0\0\0" + b"1" * 32, "NUL-terminated"),
        (b"\x01\x11\x80\x03\0\0\0\0" + b"../x".ljust(32, b"\0"), "not a USB bus id"),
    ],
)
def test_bad_import_requests(data: bytes, reason: str) -> None:
    with pytest.raises(UsbipError, match=reason):
        parse_import_request(data)


def test_the_import_reply_round_trip() -> None:
    data = import_reply(DEVICE)
    assert len(data) == 8 + DEVICE_SIZE == 320
    parse_import_reply_head(data[:8])
    assert parse_device(data[8:], "1-2") == DEVICE
    # the fields where the kernel's struct usbip_usb_device has them
    assert struct.unpack(">III", data[8 + 288 : 8 + 300]) == (1, 5, 3)
    assert struct.unpack(">HH", data[8 + 300 : 8 + 304]) == (0x046D, 0xC52B)
    assert devid(1, 5) == 0x00010005


def test_a_refused_import() -> None:
    assert import_reply(None) == b"\x01\x11\x00\x03\x00\x00\x00\x01"
    with pytest.raises(UsbipError, match="refused to export"):
        parse_import_reply_head(import_reply(None))


def _device(**changes: object) -> bytes:
    fields = {"busid": "1-2", "busnum": 1, "devnum": 5, "speed": 3}
    fields.update(changes)
    return UsbDeviceInfo(path="/p", id_vendor=1, id_product=2, **fields).pack()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_device()[:-1], "312 bytes"),
        (_device() + b"\0", "312 bytes"),
        (_device(busid="1-3"), "answered for busid '1-3'"),
        (_device(busnum=0), "bus/device numbers"),
        (_device(devnum=70000), "bus/device numbers"),
        (_device(speed=0), "speed"),
        (_device(speed=99), "speed"),
        (b"p" * 256 + _device()[256:], "path is not NUL-terminated"),
        (_device()[:256] + b"\xff" * 32 + _device()[288:], "busid is not NUL-terminated"),
    ],
)
def test_bad_device_descriptions(data: bytes, reason: str) -> None:
    with pytest.raises(UsbipError, match=reason):
        parse_device(data, "1-2")


def test_vhci_status_and_the_free_port_of_a_speed() -> None:
    ports = parse_vhci_status(STATUS + "garbage line\nhs  x 004\n")
    assert [(p.hub, p.port, p.free, p.used, p.local_busid) for p in ports] == [
        ("hs", 0, False, True, "3-1"),
        ("hs", 1, True, False, "0-0"),
        ("ss", 2, True, False, "0-0"),
        ("ss", 3, True, False, "0-0"),
    ]
    assert free_port(ports, 3) == 1  # high speed: the hs hub
    assert free_port(ports, 1) == 1
    assert free_port(ports, 5) == 2  # super speed: the ss hub
    assert free_port(ports[:1], 2) is None
