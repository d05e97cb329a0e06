"""``POST /usbip`` in ``qvd-vma-slave`` (the session's user's end of the slave channel):
hand the channel to the VMA's attach service (``qvd.vma.usb``), which plays the USB/IP
importer and gives the stream to vhci-hcd.

1. Before the 101: the service's socket (``usbip.sock`` beside the slave key file, waited
   for a few seconds: the VMA starts it when the client connects) must answer ``READY``;
   its ``ERR <reason>`` becomes a 503 with the reason (no vhci-hcd in this desktop...);
   no service and no vhci-hcd is a 503 too.
2. 101 to the client, then ``ATTACH <busid>`` with a socket carrying the channel; without
   ``X-QVD-USB-Busid`` (the original QVD clients) ``EXPORT``: the client then offers its
   device itself (the exporter-initiated ``OP_REQ_EXPORT``, ``qvd.vma.usb``). vhci-hcd
   needs a SOCKET: when nxagent gave a socket on stdin and stdout (the same one) it is
   passed as it is; otherwise (pipes) a socketpair is made and a relay thread per
   direction copies between stdin/stdout and its other end for as long as the device
   is attached.
3. The program then waits for the service's connection to end (the port was detached:
   the session was suspended or stopped, or the client went away) and exits.

Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path

from qvd.vma.slaveproto import USBIP_PROTOCOL, SlaveRefusal, UsbRequest, switching_response
from qvd.vma.usb import SOCKET_NAME

__all__ = ["SERVICE_WAIT", "channel_socket", "serve_usb"]

SERVICE_WAIT = 10.0  # seconds the service's socket may take to appear
_MAX_LINE = 256
_CHUNK = 1 << 16


def _say(message: str) -> None:
    print(f"qvd-vma-slave: {message}", file=sys.stderr, flush=True)


def _connect(path: Path, wait: float, vhci_dir: Path) -> socket.socket:
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError as exc:
            sock.close()
            if time.monotonic() >= deadline and not vhci_dir.exists():
                raise SlaveRefusal(
                    503,
                    "USB/IP is not available in this desktop: the vhci-hcd kernel module is "
                    "not loaded",
                ) from None
            if time.monotonic() >= deadline:
                raise SlaveRefusal(
                    503, f"USB/IP is not available in this desktop: its USB service does "
                         f"not answer ({exc.strerror})",
                ) from None  # fmt: skip
            time.sleep(0.2)


def _read_line(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk or len(data) > _MAX_LINE:
                break
            data += chunk
    except (TimeoutError, OSError):
        pass
    finally:
        sock.settimeout(None)
    line = data.decode("ascii", "replace").strip()
    return "".join(c if c.isprintable() else "?" for c in line)


def _is_one_socket(fd_in: int, fd_out: int) -> bool:
    a, b = os.fstat(fd_in), os.fstat(fd_out)
    return stat.S_ISSOCK(a.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _pump(src: int, dst: int, done: threading.Event, relay_end: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until EOF (``relay_end``: the socketpair's end the relay
    uses, kept open as long as this thread runs)."""
    try:
        while chunk := os.read(src, _CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view) :]
    except OSError:
        pass
    finally:
        done.set()
        if dst == relay_end.fileno():
            with contextlib.suppress(OSError):
                relay_end.shutdown(socket.SHUT_WR)  # the kernel sees the channel end
        elif src == relay_end.fileno():
            relay_end.close()  # the kernel's side ended: nothing more goes either way


def channel_socket(fd_in: int = 0, fd_out: int = 1) -> tuple[socket.socket, threading.Event]:
    """A stream socket carrying the channel (stdin/stdout), and an event set when the
    channel ended (a relay direction stopped; never set for a socket passed as it is)."""
    ended = threading.Event()
    if _is_one_socket(fd_in, fd_out):
        return socket.socket(fileno=os.dup(fd_in)), ended
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for src, dst in ((fd_in, ours.fileno()), (ours.fileno(), fd_out)):
        threading.Thread(target=_pump, args=(src, dst, ended, ours), daemon=True).start()
    return theirs, ended


def serve_usb(request: UsbRequest, trailing: bytes, key_file: str | None,
              vhci_dir: Path) -> int:  # fmt: skip
    if trailing:
        raise SlaveRefusal(400, "bytes came after the request head before the 101")
    if not key_file:
        raise SlaveRefusal(503, "USB/IP is not available in this desktop: no session directory")
    # the VMA starts its service (after loading vhci-hcd) when the client connects: a
    # request may come first, so its socket is waited for
    with _connect(Path(key_file).parent / SOCKET_NAME, SERVICE_WAIT, vhci_dir) as service:
        ready = _read_line(service, SERVICE_WAIT)
        if ready != "READY":
            reason = ready.removeprefix("ERR ").strip() or "its USB service did not answer"
            raise SlaveRefusal(503, reason)
        # with a busid the desktop imports it; without (an original QVD client) the
        # client exports: it sends OP_REQ_EXPORT after the 101
        line = "EXPORT" if request.busid is None else f"ATTACH {request.busid}"
        name = request.busid or "(offered by the client)"
        os.write(1, switching_response(USBIP_PROTOCOL))
        channel, ended = channel_socket()
        with channel:
            socket.send_fds(service, [f"{line}\n".encode()], [channel.fileno()])
        answer = _read_line(service, 60.0)
        if not answer.startswith("OK "):
            _say(f"USB device {name} not attached: {answer.removeprefix('ERR ')}")
            return 1
        _say(f"USB device {name} attached (vhci port, device: {answer[3:]})")
        # until the service lets go (detached) or, with a relay, the channel ends
        waiter = threading.Thread(target=_wait_closed, args=(service, ended), daemon=True)
        waiter.start()
        ended.wait()
        with contextlib.suppress(OSError):
            service.shutdown(socket.SHUT_RDWR)
        _say(f"USB device {name} detached")
    return 0


def _wait_closed(service: socket.socket, ended: threading.Event) -> None:
    with contextlib.suppress(OSError):
        while service.recv(64):
            pass
    ended.set()
