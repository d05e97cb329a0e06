"""The client's USB devices in the desktop, over USB/IP through the slave channel: the
VMA's (root's) half.

``qvd-vma-slave`` runs as the session's user, and handing a socket to vhci-hcd needs
root; so, when the session's channel plan has ``usb``, this device loads vhci-hcd
(``modprobe vhci-hcd``) and listens on ``<run_dir>/usbip.sock`` (a Unix socket of the
session's user, 0600; the peer's uid is checked too). Per client device the slave
program connects, hears ``READY`` (or ``ERR <reason>``: it refuses the HTTP request with
it), answers the client 101, and sends ``ATTACH <busid>`` with the channel's socket
(SCM_RIGHTS). This service then plays the importer: sends ``OP_REQ_IMPORT`` for the
busid, reads the fixed-size ``OP_REP_IMPORT`` (bounded: 8 + 312 bytes within
``HANDSHAKE_TIMEOUT``), takes a free vhci port of the device's speed and writes
``<port> <sockfd> <devid> <speed>`` to vhci-hcd's ``attach``; the kernel then owns the
stream (the URBs never pass through user space here). An original QVD client names no
device: the slave program then sends ``EXPORT`` (no busid) and this service waits for the
client's exporter-initiated ``OP_REQ_EXPORT`` (bounded: 8 + 312 bytes within
``HANDSHAKE_TIMEOUT``), answers ``OP_REP_EXPORT`` status 0 once a port is free and just
before the attach (a refusal status, then the close, when the description is bad or no
port fits), and goes on as above. It answers ``OK <port>`` and keeps
the slave program's connection open while the port is in use; the device node
(``/dev/bus/usb/BBB/DDD``) is given to the session's user (owner, 0600: the original's
``createdevice.acl`` default is the user's read-write).

A port is detached (``detach``) when the session is suspended or stopped, or when the
slave program's connection ends; a port the kernel freed (the client went away) ends
the slave program's wait. A desktop without vhci-hcd (an LXC container shares the
host's kernel and cannot load modules; a kernel without USB support) keeps refusing
with the reason. Standard library only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from qvd.vma.devices import DeviceContext
from qvd.vma.usbip import (
    DEVICE_SIZE,
    EXPORT_REFUSED,
    OP_HEAD_SIZE,
    REPLY_HEAD_SIZE,
    UsbDeviceInfo,
    UsbipError,
    VhciHost,
    export_reply,
    free_port,
    import_request,
    parse_description,
    parse_device,
    parse_export_request_head,
    parse_import_reply_head,
    valid_busid,
)

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "SOCKET_NAME",
    "VHCI_DIR",
    "UsbAttachService",
    "UsbDevice",
    "accept_export",
    "import_over",
    "load_vhci",
    "service_path",
]

log = logging.getLogger(__name__)

VHCI_DIR = Path("/sys/devices/platform/vhci_hcd.0")
USB_DEVICES = Path("/sys/bus/usb/devices")
DEV_USB = Path("/dev/bus/usb")
SOCKET_NAME = "usbip.sock"
HANDSHAKE_TIMEOUT = 20.0  # seconds for OP_REP_IMPORT once OP_REQ_IMPORT is sent
# (or, exporter-initiated, for the client's OP_REQ_EXPORT once the channel is handed over)
REQUEST_TIMEOUT = 10.0  # seconds for the slave program's ATTACH line and its socket
MAX_LINE = 128
WATCH_INTERVAL = 1.0


def service_path(run_dir: Path) -> Path:
    return run_dir / SOCKET_NAME


def _recv_exactly(sock: socket.socket, size: int, deadline: float, what: str = "import") -> bytes:
    late = (
        "the client did not answer the import request in time"
        if what == "import"
        else "the client did not send its export request in time"
    )
    data = b""
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UsbipError(late)
        sock.settimeout(left)
        try:
            chunk = sock.recv(size - len(data))
        except TimeoutError:
            raise UsbipError(late) from None
        if not chunk:
            raise UsbipError(f"the client closed the stream during the {what} handshake")
        data += chunk
    return data


def import_over(
    sock: socket.socket, busid: str, timeout: float = HANDSHAKE_TIMEOUT
) -> UsbDeviceInfo:
    """The importer's handshake on ``sock``: OP_REQ_IMPORT out, OP_REP_IMPORT in (at
    most REPLY_HEAD_SIZE + DEVICE_SIZE bytes are read, within ``timeout``)."""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    sock.sendall(import_request(busid))
    parse_import_reply_head(_recv_exactly(sock, REPLY_HEAD_SIZE, deadline))
    device = parse_device(_recv_exactly(sock, DEVICE_SIZE, deadline), busid)
    sock.settimeout(None)
    return device


def accept_export(sock: socket.socket, timeout: float = HANDSHAKE_TIMEOUT) -> UsbDeviceInfo:
    """The importer's half of the exporter-initiated handshake on ``sock``: the client's
    ``OP_REQ_EXPORT`` in (the head, then the description: at most OP_HEAD_SIZE +
    DEVICE_SIZE bytes, within ``timeout``). A bad head or description is answered with a
    refusing ``OP_REP_EXPORT`` before the UsbipError; the acceptance (status 0) is the
    caller's, once a port is free. ``sock`` keeps its timeout for that reply."""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    head = _recv_exactly(sock, OP_HEAD_SIZE, deadline, "export")
    try:
        parse_export_request_head(head)
    except UsbipError:
        _refuse_export(sock)  # not USB/IP: refused without reading on
        raise
    description = _recv_exactly(sock, DEVICE_SIZE, deadline, "export")
    try:
        return parse_description(description)
    except UsbipError:
        _refuse_export(sock)
        raise


def _refuse_export(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(export_reply(EXPORT_REFUSED))


@dataclass
class _Attachment:
    port: int
    busid: str
    control: socket.socket


class UsbAttachService:
    """The Unix socket the slave program hands client devices to (one thread each)."""

    def __init__(
        self,
        path: Path,
        uid: int,
        gid: int,
        vhci: VhciHost,
        *,
        usb_devices: Path = USB_DEVICES,
        dev_usb: Path = DEV_USB,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self.path = path
        self.handshake_timeout = handshake_timeout
        self.unavailable = ""  # why vhci-hcd could not be loaded, told to the client
        self.uid, self.gid = uid, gid
        self.vhci = vhci
        self._usb_devices, self._dev_usb = usb_devices, dev_usb
        self._lock = threading.Lock()
        self._attached: dict[int, _Attachment] = {}
        self._closing = threading.Event()
        path.unlink(missing_ok=True)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self._listener.bind(str(path))
        finally:
            os.umask(old)
        os.chown(path, uid, gid)
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._accept, name="usbip-service", daemon=True)
        self._thread.start()

    # ---- the service's life ----------------------------------------------------------
    def close(self) -> None:
        """Stop listening and detach every port."""
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.path.unlink(missing_ok=True)
        self._thread.join(5)
        self.detach_all()

    def detach_all(self) -> None:
        with self._lock:
            attachments = list(self._attached.values())
            self._attached.clear()
        for attachment in attachments:
            self._detach(attachment)

    def attached_ports(self) -> list[int]:
        with self._lock:
            return sorted(self._attached)

    def _detach(self, attachment: _Attachment) -> None:
        port = self.vhci.port(attachment.port)
        if port is not None and not port.free:
            try:
                self.vhci.detach(attachment.port)
                log.info("USB: detached %s from vhci port %d", attachment.busid, attachment.port)
            except OSError as exc:  # the kernel freed it meanwhile
                log.info("USB: detach of port %d: %s", attachment.port, exc.strerror)
        with contextlib.suppress(OSError):
            attachment.control.close()

    # ---- one slave connection ---------------------------------------------------------
    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="usbip-attach",
                             daemon=True).start()  # fmt: skip

    def _serve(self, conn: socket.socket) -> None:
        keep = False
        try:
            keep = self._attach_one(conn)
        except Exception:  # one device never ends the service
            log.exception("USB: attach failed")
            _answer(conn, "ERR the desktop failed to attach the device")
        finally:
            if not keep:
                conn.close()

    def _attach_one(self, conn: socket.socket) -> bool:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, peer_uid, _gid = struct.unpack("3i", creds)
        if peer_uid not in (self.uid, 0):
            log.warning("USB: refused a connection of uid %d", peer_uid)
            _answer(conn, "ERR not the session's user")
            return False
        if not self.vhci.present():
            why = f" ({self.unavailable})" if self.unavailable else ""
            _answer(conn, "ERR USB/IP is not available in this desktop: the vhci-hcd kernel "
                          f"module is not loaded{why}")  # fmt: skip
            return False
        _answer(conn, "READY")
        conn.settimeout(REQUEST_TIMEOUT)
        try:
            message, fds, _flags, _addr = socket.recv_fds(conn, MAX_LINE, 1)
        except (TimeoutError, OSError):
            log.info("USB: the slave program sent no device")
            return False
        with contextlib.ExitStack() as stack:
            channels = [stack.enter_context(socket.socket(fileno=fd)) for fd in fds]
            words = message.decode("ascii", "replace").split()
            exporting = words == ["EXPORT"]  # an original client: it offers, we accept
            if not (exporting or (len(words) == 2 and words[0] == "ATTACH")) or (
                len(channels) != 1
            ):
                _answer(conn, "ERR expected ATTACH <busid> or EXPORT with the channel's socket")
                return False
            asked = "the exported device" if exporting else words[1][:40]
            try:
                channel = channels[0]
                if channel.type != socket.SOCK_STREAM:
                    raise UsbipError("the channel is not a stream socket")
                if exporting:
                    device = accept_export(channel, self.handshake_timeout)
                else:
                    device = import_over(channel, valid_busid(words[1]), self.handshake_timeout)
                attachment = self._attach(channel, device, conn, exporting)
            except (UsbipError, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                log.info("USB: %s not attached: %s", asked, reason)
                _answer(conn, f"ERR {reason}")
                return False
        # our copy of the channel is closed: vhci-hcd holds its own
        busid = device.busid
        port = attachment.port
        log.info("USB: %s (%04x:%04x) attached on vhci port %d", busid, device.id_vendor,
                 device.id_product, port)  # fmt: skip
        _answer(conn, f"OK {port} {device.id_vendor:04x}:{device.id_product:04x}")
        self._give_to_user(port)
        self._watch(attachment)
        return True

    def _attach(
        self,
        channel: socket.socket,
        device: UsbDeviceInfo,
        control: socket.socket,
        exporting: bool = False,
    ) -> _Attachment:
        """Attach and register in one step (a suspend never misses a port). Exporter-
        initiated, the client hears OP_REP_EXPORT first: status 0 just before the attach
        (the kernel owns the socket after it), a refusal when no port fits."""
        with self._lock:
            port = free_port(self.vhci.ports(), device.speed)
            if port is None:
                if exporting:
                    _refuse_export(channel)
                raise UsbipError("no free vhci-hcd port for the device's speed")
            if exporting:
                channel.sendall(export_reply(0))  # within the handshake's timeout
                channel.settimeout(None)
            self.vhci.attach(port, channel.fileno(), device)
            attachment = _Attachment(port, device.busid, control)
            self._attached[port] = attachment
            return attachment

    def _give_to_user(self, port: int, timeout: float = 15.0) -> None:
        """The device node of the attached port: owned by the session's user, 0600."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._closing.is_set():
            state = self.vhci.port(port)
            if state is None or state.free:
                return
            try:
                name = valid_busid(state.local_busid)
                busnum = int((self._usb_devices / name / "busnum").read_text())
                devnum = int((self._usb_devices / name / "devnum").read_text())
                node = self._dev_usb / f"{busnum:03d}" / f"{devnum:03d}"
                if node.is_symlink() or not node.exists():
                    raise FileNotFoundError(node)
            except (UsbipError, OSError, ValueError):
                time.sleep(0.2)
                continue
            _settle_udev()  # udev's own rule runs first, ours stays
            try:  # /dev is root's and udev's: no one else plants a link there
                os.chmod(node, 0o600)  # first: never the user's while others may read
                os.chown(node, self.uid, self.gid, follow_symlinks=False)
                log.info("USB: %s given to uid %d", node, self.uid)
            except OSError as exc:
                log.warning("USB: cannot give %s to uid %d: %s", node, self.uid, exc.strerror)
            return
        log.warning("USB: the device node of vhci port %d did not appear", port)

    def _watch(self, attachment: _Attachment) -> None:
        """Until the port is freed or the slave program goes: then detach and close."""
        while not self._closing.is_set():
            with self._lock:
                if self._attached.get(attachment.port) is not attachment:
                    return  # detach_all took it (and closed the connection)
            try:
                readable, _, _ = select.select([attachment.control], [], [], WATCH_INTERVAL)
            except (OSError, ValueError):  # closed by detach_all meanwhile
                return
            gone = False
            if readable:
                with contextlib.suppress(OSError):
                    gone = attachment.control.recv(1) == b""
            state = self.vhci.port(attachment.port)
            if gone or state is None or state.free:
                with self._lock:
                    if self._attached.get(attachment.port) is attachment:
                        del self._attached[attachment.port]
                self._detach(attachment)
                return


def _answer(conn: socket.socket, line: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(line.encode("ascii", "replace")[:MAX_LINE] + b"\n")


def _settle_udev() -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["udevadm", "settle", "-t", "5"], stdin=subprocess.DEVNULL,
                       capture_output=True, check=False, timeout=10)  # fmt: skip


def load_vhci(vhci: VhciHost) -> str | None:
    """Load vhci-hcd when it is not there; the reason when it cannot be loaded."""
    if vhci.present():
        return None
    try:
        done = subprocess.run(["modprobe", "vhci-hcd"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"modprobe vhci-hcd: {exc}"
    if done.returncode != 0:
        return f"modprobe vhci-hcd: {done.stderr.strip()[:200] or done.returncode}"
    deadline = time.monotonic() + 5
    while not vhci.present() and time.monotonic() < deadline:
        time.sleep(0.1)
    return None if vhci.present() else "vhci-hcd loaded but its sysfs directory is missing"


class UsbDevice:
    """The VMA device (``qvd.vma.devices``): the attach service while the session has a
    USB plan, every port detached on suspend and stop."""

    name = "usb"

    def __init__(self, vhci: VhciHost | None = None) -> None:
        self._vhci = vhci or VhciHost(VHCI_DIR)
        self._service: UsbAttachService | None = None

    def session_env(self, ctx: DeviceContext) -> dict[str, str]:
        return {}

    def connected(self, ctx: DeviceContext) -> None:
        if not ctx.plan.usb:
            return
        reason = load_vhci(self._vhci)
        if reason is not None:
            log.info("USB/IP is not available in this desktop: %s", reason)
        if self._service is None:
            self._service = UsbAttachService(
                service_path(ctx.run_dir), ctx.user.pw_uid, ctx.user.pw_gid, self._vhci
            )
        self._service.unavailable = reason or ""

    def suspended(self, ctx: DeviceContext) -> None:
        if self._service is not None:
            self._service.detach_all()

    def stopped(self, ctx: DeviceContext) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
