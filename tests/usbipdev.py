"""A USB device in user space, exported over USB/IP: the test suite's stand-in for a
real device behind the client's usbip-host (this machine has no USB and no modules).

``EmulatedDevice`` is one simple vendor-specific device (class 0xff, one interface, no
endpoint but the control one) answering what usbcore asks while it enumerates:
GET_DESCRIPTOR (device, configuration, strings), SET_CONFIGURATION, SET_INTERFACE,
GET_STATUS and a vendor IN request (``VENDOR_HELLO``); anything else stalls (-EPIPE).
``serve`` reads ``USBIP_CMD_SUBMIT``/``USBIP_CMD_UNLINK`` from the stream and answers
``USBIP_RET_SUBMIT``/``USBIP_RET_UNLINK`` until the stream ends. The desktop's vhci-hcd
and usbcore are the real kernel's.

``EmulatedExporter`` plugs it into the client (``qvd.client.usb.use_exporter``): it
"has" the device at ``BUSID`` (or ``VENDOR:PRODUCT``). ``OriginalClientExport`` plays an
original QVD client instead (exporter-initiated, ``usbip connect``): ``POST /usbip``
without a busid, then ``OP_REQ_EXPORT`` after the 101 and ``OP_REP_EXPORT`` back, then the
device's URBs. Pure protocol code and threads.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

from qvd.client.usb import UsbUnavailable
from qvd.vma.usbip import (
    CMD_SUBMIT,
    CMD_UNLINK,
    EXPORT_REPLY_SIZE,
    OP_REP_EXPORT,
    RET_SUBMIT,
    RET_UNLINK,
    USBIP_VERSION,
    UsbDeviceInfo,
    export_request,
)

__all__ = [
    "BUSID",
    "MANUFACTURER",
    "PRODUCT",
    "PRODUCT_ID",
    "VENDOR_HELLO",
    "VENDOR_ID",
    "EmulatedDevice",
    "EmulatedExporter",
    "OriginalClientExport",
    "get_descriptor",
    "original_usb_request",
]

BUSID = "7-1"
VENDOR_ID = 0x1209  # pid.codes, the open-source vendor id
PRODUCT_ID = 0xC0DE
MANUFACTURER = "QVD tests"
PRODUCT = "QVD USB/IP test device"
SERIAL = "0001"
VENDOR_HELLO = 0x01  # a vendor IN request answered with b"hello from the client"
SPEED_HIGH = 3
_HEAD = struct.Struct(">IIIII")  # command, seqnum, devid, direction, ep
_SUBMIT = struct.Struct(">IiiiI8s")  # transfer_flags, length, start_frame, packets, interval, setup
_RET = struct.Struct(">iiiii8x")  # status, actual_length, start_frame, packets, error_count
_EPIPE, _ECONNRESET = 32, 104
MAX_TRANSFER = 1 << 20  # more than a control transfer ever asks


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def get_descriptor(
    held: socket.socket, seqnum: int, kind: int, length: int, devid: int = 0x70002
) -> bytes:
    """A GET_DESCRIPTOR control URB as vhci-hcd would send it on the socket it holds
    (``CMD_SUBMIT``, direction IN, endpoint 0); the descriptor of the ``RET_SUBMIT``
    answering it (same seqnum)."""
    setup = bytes([0x80, 6, 0, kind, 0, 0, length, 0])
    urb = _HEAD.pack(CMD_SUBMIT, seqnum, devid, 1, 0) + _SUBMIT.pack(0, length, 0, 0, 0, setup)
    held.sendall(urb)
    held.settimeout(10)
    reply = b""
    while len(reply) < 48 + length:
        chunk = held.recv(4096)
        assert chunk, "the stream ended before the URB's answer"
        reply += chunk
    assert struct.unpack(">II", reply[:8]) == (RET_SUBMIT, seqnum)
    return reply[48:]


def _string(text: str) -> bytes:
    raw = text.encode("utf-16-le")
    return bytes([2 + len(raw), 3]) + raw


@dataclass
class EmulatedDevice:
    vendor_id: int = VENDOR_ID
    product_id: int = PRODUCT_ID
    requests: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    configuration: int = 0

    def info(self, busid: str) -> UsbDeviceInfo:
        return UsbDeviceInfo(
            path=f"/sys/devices/emulated/usb7/{busid}", busid=busid, busnum=7, devnum=2,
            speed=SPEED_HIGH, id_vendor=self.vendor_id, id_product=self.product_id,
            bcd_device=0x0100, device_class=0xFF, configuration_value=0,
            num_configurations=1, num_interfaces=1,
        )  # fmt: skip

    def descriptor(self, kind: int, index: int) -> bytes | None:
        if kind == 1:  # device
            return struct.pack("<BBHBBBBHHHBBBB", 18, 1, 0x0200, 0xFF, 0, 0, 64,
                               self.vendor_id, self.product_id, 0x0100, 1, 2, 3, 1)  # fmt: skip
        if kind == 2 and index == 0:  # configuration + one vendor interface
            interface = struct.pack("<BBBBBBBBB", 9, 4, 0, 0, 0, 0xFF, 0, 0, 0)
            return struct.pack("<BBHBBBBB", 9, 2, 18, 1, 1, 0, 0x80, 50) + interface
        if kind == 3:
            strings = {0: b"\x04\x03\x09\x04", 1: _string(MANUFACTURER), 2: _string(PRODUCT),
                       3: _string(SERIAL)}  # fmt: skip
            return strings.get(index)
        return None

    def control(self, setup: bytes, out_data: bytes) -> tuple[int, bytes]:
        """(status, IN data) of a control transfer."""
        request_type, request, value, index, length = struct.unpack("<BBHHH", setup)
        self.requests.append((request_type, request, value, index, length))
        if request_type == 0x80 and request == 6:  # GET_DESCRIPTOR
            found = self.descriptor(value >> 8, value & 0xFF)
            return (0, found[:length]) if found is not None else (-_EPIPE, b"")
        if request_type == 0x00 and request == 9:  # SET_CONFIGURATION
            self.configuration = value & 0xFF
            return 0, b""
        if request_type == 0x80 and request == 8:  # GET_CONFIGURATION
            return 0, bytes([self.configuration])[:length]
        if request_type == 0x01 and request == 11:  # SET_INTERFACE
            return 0, b""
        if request_type in (0x80, 0x81, 0x82) and request == 0:  # GET_STATUS
            return 0, b"\0\0"[:length]
        if request_type == 0xC0 and request == VENDOR_HELLO:
            return 0, b"hello from the client"[:length]
        return -_EPIPE, b""

    def serve(self, sock: socket.socket) -> None:
        """Answer URBs until the stream ends (or carries something that is not USB/IP)."""
        with sock:
            while (head := _recv_exactly(sock, _HEAD.size + _SUBMIT.size)) is not None:
                command, seqnum, _devid, direction, ep = _HEAD.unpack_from(head)
                if command == CMD_UNLINK:  # every submit was answered already
                    sock.sendall(_HEAD.pack(RET_UNLINK, seqnum, 0, 0, 0) + _RET.pack(0, 0, 0, 0, 0))
                    continue
                if command != CMD_SUBMIT:
                    return
                _flags, length, _start, packets, _interval, setup = _SUBMIT.unpack_from(
                    head, _HEAD.size
                )
                if not 0 <= length <= MAX_TRANSFER or packets not in (0, -1, 0xFFFFFFFF):
                    return  # isochronous or absurd: not this device
                out_data = b""
                if direction == 0 and length:
                    got = _recv_exactly(sock, length)
                    if got is None:
                        return
                    out_data = got
                if ep == 0:
                    status, data = self.control(setup, out_data)
                else:
                    status, data = -_EPIPE, b""
                actual = len(data) if direction == 1 else (len(out_data) if status == 0 else 0)
                ret = _RET.pack(status, actual, 0, 0, 0)
                sock.sendall(_HEAD.pack(RET_SUBMIT, seqnum, 0, 0, 0) + ret + data)


class EmulatedExporter:
    """The client's exporter (``qvd.client.usb.UsbExporter``) with one emulated device."""

    def __init__(self, busid: str = BUSID) -> None:
        self.busid = busid
        self.device = EmulatedDevice()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []

    def resolve(self, wanted: str) -> str:
        ids = f"{self.device.vendor_id:04x}:{self.device.product_id:04x}"
        if wanted in (self.busid, ids):
            return self.busid
        raise UsbUnavailable(f"no USB device {wanted} on this machine")

    def describe(self, busid: str) -> UsbDeviceInfo:
        return self.device.info(busid)

    def serve(self, busid: str, sock: socket.socket) -> None:
        self._socks.append(sock)
        thread = threading.Thread(target=self.device.serve, args=(sock,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)


def original_usb_request(key: str) -> bytes:
    """What an original QVD client sends on its slave connection to share a device: no
    ``X-QVD-USB-Busid`` (its device travels in the handshake)."""
    return (
        f"POST /usbip HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {key}\r\n"
        "Connection: Upgrade\r\nUpgrade: qvd:usbip/1.0\r\n\r\n"
    ).encode("ascii")


class OriginalClientExport:
    """An original QVD client sharing the emulated device over a slave connection to
    ``port`` (loopback): the request, the 101, ``OP_REQ_EXPORT`` with the device's
    description, ``OP_REP_EXPORT``; on status 0 the device serves the URBs in a thread
    (as the client's usbip-host would)."""

    def __init__(self, port: int, key: str, busid: str = BUSID) -> None:
        self.device = EmulatedDevice()
        self.busid = busid
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.response_head = b""
        self.status: int | None = None  # OP_REP_EXPORT's status; None: the stream closed
        self._thread: threading.Thread | None = None
        self.sock.sendall(original_usb_request(key))

    def read_response(self) -> int:
        """The HTTP status of the slave program's answer (101 to go on)."""
        while b"\r\n\r\n" not in self.response_head:
            chunk = self.sock.recv(1)  # byte by byte: nothing after the head is eaten
            if not chunk:
                break
            self.response_head += chunk
        words = self.response_head.split(b" ", 2)
        return int(words[1]) if len(words) > 1 and words[1].isdigit() else 0

    def export(self, request: bytes | None = None) -> int | None:
        """``usbip connect``'s handshake (``request``: another OP_REQ_EXPORT than the
        device's own); the reply's status, and the device served when it is 0."""
        self.sock.sendall(request or export_request(self.device.info(self.busid)))
        reply = _recv_exactly(self.sock, EXPORT_REPLY_SIZE)
        if reply is None:
            return None
        version, code, status = struct.unpack(">HHI", reply)
        assert (version, code) == (USBIP_VERSION, OP_REP_EXPORT), reply
        self.status = status
        if status == 0:
            self.sock.settimeout(None)
            self._thread = threading.Thread(target=self.device.serve, args=(self.sock,),
                                            daemon=True)  # fmt: skip
            self._thread.start()
        return status

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()
