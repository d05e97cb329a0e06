"""The USB/IP wire format (``qvd.vma.usbip``): the import handshake both ways, the
exporter-initiated one (``OP_REQ_EXPORT``/``OP_REP_EXPORT``, the original clients'), the
busid rule, vhci-hcd's status file and its port choice."""

from __future__ import annotations

import struct

import pytest

from qvd.vma.usbip import (
    DEVICE_SIZE,
    EXPORT_REFUSED,
    EXPORT_REQUEST_SIZE,
    REQUEST_SIZE,
    UsbDeviceInfo,
    UsbipError,
    devid,
    export_reply,
    export_request,
    free_port,
    import_reply,
    import_request,
    parse_description,
    parse_device,
    parse_export_reply,
    parse_export_request,
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


def test_the_export_request_as_usbip_connect_sends_it() -> None:
    data = export_request(DEVICE)
    assert len(data) == EXPORT_REQUEST_SIZE == 8 + 312
    assert data[:8] == b"\x01\x11\x80\x06\x00\x00\x00\x00"  # 0x0111, OP_REQ_EXPORT, 0
    assert data[8:] == DEVICE.pack()
    # busid at 256, then busnum, devnum, speed (u32 BE), the ids (u16 BE), six u8
    assert data[8 + 256 : 8 + 260] == b"1-2\0"
    fields = struct.unpack(">IIIHHHBBBBBB", data[8 + 288 :])
    assert fields == (1, 5, 3, 0x046D, 0xC52B, 0x1201, 0, 0, 0, 1, 1, 3)
    assert parse_export_request(data) == DEVICE


def test_the_export_reply_both_ways() -> None:
    assert export_reply() == b"\x01\x11\x00\x06\x00\x00\x00\x00"
    parse_export_reply(export_reply())
    assert export_reply(EXPORT_REFUSED) == b"\x01\x11\x00\x06\x00\x00\x00\x01"
    with pytest.raises(UsbipError, match="refused the device"):
        parse_export_reply(export_reply(EXPORT_REFUSED))
    with pytest.raises(UsbipError, match="not an OP_REP_EXPORT"):
        parse_export_reply(import_reply(None))
    with pytest.raises(UsbipError, match="8 bytes"):
        parse_export_reply(export_reply() + b"\0")


def _export(**changes: object) -> bytes:
    return b"\x01\x11\x80\x06\0\0\0\0" + _device(**changes)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_export()[:-1], "320 bytes"),
        (_export() + b"\0", "320 bytes"),
        (b"\x01\x11\x80\x03" + _export()[4:], "not an OP_REQ_EXPORT"),  # an import code
        (b"\x01\x06\x80\x06" + _export()[4:], "not an OP_REQ_EXPORT"),  # another version
        (b"GET / HTTP/1.1\r\n" + _export()[16:], "not an OP_REQ_EXPORT"),
        (_export(busid="1-1/../x"), "not a USB bus id"),
        (_export(busid="1-1\n"), "not a USB bus id"),
        (_export(busnum=0), "bus/device numbers"),
        (_export(devnum=1 << 16), "bus/device numbers"),
        (_export(speed=0), "speed"),
        (_export(speed=0x7FFFFFFF), "speed"),
        (_export()[:8] + b"p" * 256 + _export()[264:], "path is not NUL-terminated"),
        (_export()[: 8 + 256] + b"\xff" * 32 + _export()[296:], "busid is not NUL-terminated"),
        (_export()[: 8 + 256] + "1-é".encode().ljust(32, b"\0") + _export()[296:], "not ASCII"),
    ],
)
def test_bad_export_requests(data: bytes, reason: str) -> None:
    with pytest.raises(UsbipError, match=reason):
        parse_export_request(data)


def test_one_description_parser_for_both_handshakes() -> None:
    """The import reply's description and the export request's are the same struct,
    checked by the same rules (the import adds: the busid that was asked for)."""
    assert parse_description(DEVICE.pack()) == parse_device(DEVICE.pack(), "1-2") == DEVICE
    for bad in (_device(speed=7), _device(busnum=0), _device(busid="x")):
        with pytest.raises(UsbipError) as as_export:
            parse_export_request(b"\x01\x11\x80\x06\0\0\0\0" + bad)
        with pytest.raises(UsbipError) as as_import:
            parse_device(bad, "1-2")
        assert str(as_export.value) == str(as_import.value)
