"""USB devices over USB/IP through the slave channel (the original's
``client.usb.enable`` and ``client.usb.implementation``).

With ``client.usb.enable`` the client sends ``qvd.client.usb.enabled=1`` and
``qvd.client.usb.implementation=USBIP`` (as the original clients) and, once nxproxy
relays, shares each device chosen by ``client.usb.share.<N> = <busid or vendor:product>``
(e.g. ``1-2`` or ``046d:c52b``): one slave connection per device, ``POST /usbip`` with
``Upgrade: qvd:usbip/1.0`` and ``X-QVD-USB-Busid``. After the desktop's 101 the client
is the USB/IP exporter: it reads the desktop's ``OP_REQ_IMPORT`` (it must name the
device asked for), answers ``OP_REP_IMPORT`` with the device's description and hands
the stream to the exporter.

The product's exporter (``UsbipHostExporter``) is the Linux kernel's ``usbip-host``: the
device is bound to it (``usbip bind -b <busid>``) and the socket is written to
``/sys/bus/usb/drivers/usbip-host/<busid>/usbip_sockfd``; both need root and the
usbip-host module. Where they are missing the client says why and the session goes on.
A desktop that cannot attach (no vhci-hcd: every LXC desktop) refuses with the reason,
which is printed.

``use_exporter`` replaces the exporter from Python, for the test suite's emulated device
(``tests/usbipdev.py``, run through ``tests/usbipclient.py``); it is not a setting.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from qvd.client.devices import ClientSession
from qvd.client.settings import ClientSettings, SettingsError
from qvd.client.slave import SlaveRefused, upgrade
from qvd.vma.usbip import (
    REQUEST_SIZE,
    UsbDeviceInfo,
    UsbipError,
    import_reply,
    parse_import_request,
    valid_busid,
)

__all__ = [
    "SHARE_PREFIX",
    "UsbDevice",
    "UsbExporter",
    "UsbUnavailable",
    "UsbipHostExporter",
    "check_selection",
    "export_over",
    "selections",
    "usb_request",
    "use_exporter",
]

SHARE_PREFIX = "client.usb.share."
_VID_PID = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})")
USB_DEVICES = Path("/sys/bus/usb/devices")
USBIP_HOST = Path("/sys/bus/usb/drivers/usbip-host")
_SPEEDS = {"1.5": 1, "12": 2, "480": 3, "5000": 5, "10000": 6, "20000": 6}
HANDSHAKE_TIMEOUT = 30.0


class UsbUnavailable(Exception):
    """A device cannot be shared (the reason is the message)."""


def check_selection(value: str) -> str:
    """A ``client.usb.share.<N>`` value: a busid or ``vendor:product`` (hex)."""
    value = value.strip()
    if _VID_PID.fullmatch(value):
        return value.lower()
    try:
        return valid_busid(value)
    except UsbipError:
        raise SettingsError(
            f"{value[:40]!r} is neither a USB bus id (1-2) nor vendor:product (046d:c52b)"
        ) from None


def selections(conf: ClientSettings) -> list[str]:
    """The chosen devices, in the order of their ``<N>``."""

    def order(key: str) -> tuple[int, str]:
        suffix = key[len(SHARE_PREFIX) :]
        return (int(suffix) if suffix.isdigit() else 1 << 30, suffix)

    keys = sorted((k for k in conf.values if k.startswith(SHARE_PREFIX)), key=order)
    return [check_selection(conf.values[k]) for k in keys]


def usb_request(key: str, busid: str) -> bytes:
    return (
        f"POST /usbip HTTP/1.1\r\nAuthorization: Basic {key}\r\nConnection: Upgrade\r\n"
        f"Upgrade: qvd:usbip/1.0\r\nX-QVD-USB-Busid: {valid_busid(busid)}\r\n\r\n"
    ).encode("ascii")


class UsbExporter(Protocol):
    """Where the client's devices come from."""

    def resolve(self, wanted: str) -> str:
        """The busid of ``wanted`` (a busid or vendor:product); UsbUnavailable else."""
        ...

    def describe(self, busid: str) -> UsbDeviceInfo:
        """The device ready to be exported; UsbUnavailable with the reason else."""
        ...

    def serve(self, busid: str, sock: socket.socket) -> None:
        """Export the device over ``sock`` (after OP_REP_IMPORT); takes ``sock``."""
        ...

    def close(self) -> None: ...


def _recv_exactly(sock: socket.socket, size: int, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise UsbipError("the desktop closed the stream before its import request")
        data += chunk
    sock.settimeout(None)
    return data


def export_over(sock: socket.socket, busid: str, exporter: UsbExporter) -> UsbDeviceInfo:
    """The exporter's side of the handshake on the switched stream, then ``serve``."""
    asked = parse_import_request(_recv_exactly(sock, REQUEST_SIZE, HANDSHAKE_TIMEOUT))
    if asked != busid:
        sock.sendall(import_reply(None))
        raise UsbipError(f"the desktop asked for {asked!r}, not {busid!r}")
    try:
        device = exporter.describe(busid)
    except UsbUnavailable:
        sock.sendall(import_reply(None))
        raise
    sock.sendall(import_reply(device))
    exporter.serve(busid, sock)
    return device


# ---- the product's exporter: the kernel's usbip-host ------------------------------------
def _attr(busid: str, name: str, root: Path) -> str:
    return (root / valid_busid(busid) / name).read_text(encoding="ascii").strip()


class UsbipHostExporter:
    """Devices of this machine through the kernel's usbip-host (root, Linux only)."""

    def __init__(self, devices: Path = USB_DEVICES, driver: Path = USBIP_HOST) -> None:
        self._devices, self._driver = devices, driver
        self._exported: list[str] = []

    def resolve(self, wanted: str) -> str:
        match = _VID_PID.fullmatch(wanted)
        if match is None:
            if not (self._devices / valid_busid(wanted)).is_dir():
                raise UsbUnavailable(f"no USB device {wanted} on this machine")
            return wanted
        for entry in sorted(self._devices.iterdir()):
            try:
                busid = valid_busid(entry.name)
                ids = (_attr(busid, "idVendor", self._devices),
                       _attr(busid, "idProduct", self._devices))  # fmt: skip
            except (UsbipError, OSError):
                continue  # a hub's interface, a root hub
            if ids == (match.group(1).lower(), match.group(2).lower()):
                return busid
        raise UsbUnavailable(f"no USB device {wanted} on this machine")

    def describe(self, busid: str) -> UsbDeviceInfo:
        if not self._driver.is_dir():
            raise UsbUnavailable(
                "the usbip-host kernel module is not loaded on this machine "
                "(as root: modprobe usbip-host)"
            )
        if not (self._driver / busid).exists():
            try:
                done = subprocess.run(["usbip", "bind", "-b", valid_busid(busid)],
                                      stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, check=False, timeout=20)  # fmt: skip
            except (OSError, subprocess.SubprocessError) as exc:
                raise UsbUnavailable(f"usbip bind -b {busid}: {exc}") from None
            if done.returncode != 0:
                reason = done.stderr.strip()[:200] or f"exit status {done.returncode}"
                raise UsbUnavailable(f"usbip bind -b {busid} (needs root): {reason}")
        try:
            speed = _SPEEDS.get(_attr(busid, "speed", self._devices), 3)
            device = UsbDeviceInfo(
                path=str(self._devices / busid), busid=busid,
                busnum=int(_attr(busid, "busnum", self._devices)),
                devnum=int(_attr(busid, "devnum", self._devices)), speed=speed,
                id_vendor=int(_attr(busid, "idVendor", self._devices), 16),
                id_product=int(_attr(busid, "idProduct", self._devices), 16),
                bcd_device=int(_attr(busid, "bcdDevice", self._devices), 16),
                device_class=int(_attr(busid, "bDeviceClass", self._devices), 16),
                device_subclass=int(_attr(busid, "bDeviceSubClass", self._devices), 16),
                device_protocol=int(_attr(busid, "bDeviceProtocol", self._devices), 16),
                configuration_value=int(_attr(busid, "bConfigurationValue", self._devices) or 0),
                num_configurations=int(_attr(busid, "bNumConfigurations", self._devices)),
                num_interfaces=int(_attr(busid, "bNumInterfaces", self._devices) or 0),
            )  # fmt: skip
        except (OSError, ValueError) as exc:
            raise UsbUnavailable(f"cannot read USB device {busid}: {exc}") from None
        return device

    def serve(self, busid: str, sock: socket.socket) -> None:
        with sock:
            try:
                (self._driver / busid / "usbip_sockfd").write_text(f"{sock.fileno()}\n")
            except OSError as exc:
                raise UsbUnavailable(f"usbip-host refused {busid}: {exc.strerror}") from None
        self._exported.append(busid)  # the kernel holds the socket now

    def close(self) -> None:
        for busid in self._exported:
            with contextlib.suppress(OSError):
                (self._driver / busid / "usbip_sockfd").write_text("-1\n")
        self._exported.clear()


_exporter_factory: Callable[[], UsbExporter] = UsbipHostExporter


def use_exporter(factory: Callable[[], UsbExporter]) -> None:
    """Replace the exporter (the test suite's emulated device); never from a setting."""
    global _exporter_factory
    _exporter_factory = factory


def _say(message: str) -> None:
    print(f"USB: {message}", file=sys.stderr, flush=True)


class UsbDevice:
    name = "usb"

    def __init__(self, conf: ClientSettings | None = None) -> None:
        self._wanted = selections(conf) if conf is not None else []
        self._exporter: UsbExporter | None = None

    def params(self) -> dict[str, str]:
        return {"qvd.client.usb.enabled": "1", "qvd.client.usb.implementation": "USBIP"}

    def open(self, session: ClientSession) -> list[str]:
        return []

    def attached(self, session: ClientSession) -> None:
        if session.slave_port is None:
            _say("no slave channel")
            return
        if not self._wanted:
            _say(f"no device chosen ({SHARE_PREFIX}<N> = <busid or vendor:product>)")
            return
        self._exporter = exporter = _exporter_factory()
        for wanted in self._wanted:
            try:
                busid = exporter.resolve(wanted)
            except (UsbUnavailable, UsbipError) as exc:
                _say(f"{wanted} not shared: {exc}")
                continue
            self._share(session, exporter, busid)

    def _share(self, session: ClientSession, exporter: UsbExporter, busid: str) -> None:
        assert session.slave_port is not None
        started = time.monotonic()
        try:
            sock = upgrade(session.slave_port, usb_request(session.slave_key, busid))
        except SlaveRefused as refused:
            print(f"USB refused by the desktop ({refused.status}): {refused}",
                  file=sys.stderr, flush=True)  # fmt: skip
            return
        except ConnectionError as exc:
            _say(str(exc))
            return
        try:
            device = export_over(sock, busid, exporter)
        except (UsbUnavailable, UsbipError, OSError) as exc:
            sock.close()
            _say(f"{busid} not shared: {exc}")
            return
        took = time.monotonic() - started
        _say(f"{busid} ({device.id_vendor:04x}:{device.id_product:04x}) shared with the "
             f"desktop in {took:.2f} s")  # fmt: skip

    def close(self) -> None:
        if self._exporter is not None:
            self._exporter.close()
            self._exporter = None
