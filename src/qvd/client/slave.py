"""The client's end of the slave channel: one HTTP/1.1 request per connection to the
local nxproxy's ``slave=`` listener, which NX carries to the desktop's slave server
(``qvd.vma.slave``). ``upgrade`` sends the request with the slave key and returns the
socket once the desktop answered 101; any other answer comes back as ``SlaveRefused``
with the desktop's reason."""

from __future__ import annotations

import socket
import time

__all__ = ["SlaveRefused", "request_bytes", "upgrade"]

_MAX_HEAD = 16 * 1024


class SlaveRefused(Exception):
    """The desktop refused the request (``status``; the reason is the message)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def request_bytes(method: str, path: str, key: str, protocol: str) -> bytes:
    """The request head (``path`` already percent-encoded; the key is the raw slave key,
    as the original client sends it)."""
    return (
        f"{method} {path} HTTP/1.1\r\nAuthorization: Basic {key}\r\n"
        f"Connection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
    ).encode("ascii")


def _read_response(sock: socket.socket) -> tuple[int, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)  # byte by byte: nothing after the head is ours
        if not chunk:
            raise ConnectionError("the slave channel closed before the answer")
        data += chunk
        if len(data) > _MAX_HEAD:
            raise ConnectionError("the slave channel's answer is too long")
    head = data.decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP answer: {lines[0][:80]!r}")
    status = int(parts[1])
    if status == 101:
        return status, ""
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = min(int(value.strip()), 4096)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    reason = body.decode("utf-8", "replace").strip() or lines[0]
    # the desktop is not trusted: its reason is printed, so no terminal escapes in it
    return status, "".join(c if c.isprintable() else "?" for c in reason)


def upgrade(port: int, request: bytes, timeout: float = 20.0) -> socket.socket:
    """Send ``request`` on a new slave connection and return the switched socket.

    The listener appears only once the NX session runs, and a connection NX accepts
    before the desktop is ready is closed at once: both are retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # request/response traffic (SFTP): Nagle would hold each small answer back
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.settimeout(max(1.0, deadline - time.monotonic()))
            sock.connect(("127.0.0.1", port))
            sock.sendall(request)
            status, reason = _read_response(sock)
        except OSError as exc:
            sock.close()
            if time.monotonic() >= deadline:
                raise ConnectionError(f"the slave channel did not answer: {exc}") from None
            time.sleep(0.25)
            continue
        if status != 101:
            sock.close()
            raise SlaveRefused(status, reason)
        sock.settimeout(None)
        return sock
