"""The slave channel's protocol, inside the desktop (pure: bytes in, decisions and bytes out).

The client reaches the desktop's slave server through its nxproxy's ``slave=`` listener;
nxagent runs ``qvd-vma-slave`` for each such connection with the channel on stdin/stdout
(reference §3.7). One connection carries one HTTP/1.1 request, authenticated with the
session's slave key as ``Authorization: Basic <key>`` (the raw key, as the original):

- ``PUT /shares/<name>`` with ``Upgrade: qvd:sftp/1.0[;charset=<cs>]`` → 101 with
  ``X-QVD-Share-Ticket``, then SFTP over the stream (the desktop mounts the client's
  folder on ``~/Redirected/<name>``);
- ``POST /usbip`` with ``Upgrade: qvd:usbip/1.0`` and ``X-QVD-USB-Busid: <busid>`` (one
  device per connection; without it the client exports, ``usbip connect``-style) → 101
  then USB/IP (``qvd.vma.usbslave``), or a refusal;
- ``POST /throughput`` with ``Upgrade: qvd:throughput/1.0`` (ours, for bench/): 101, then
  the desktop sends ``X-QVD-Send`` bytes and closes, or reads ``X-QVD-Receive`` bytes and
  answers their count on a line (at most 1 GiB; NX closes a channel as soon as one side
  half-closes, so the count must be known): the raw channel's speed both ways.

Order of the checks (each refusal is a final response with the reason in the body, and
the connection closes): a head that does not end within ``MAX_HEAD`` bytes → 431; a head
that is not HTTP/1.x → 400; no or a wrong key → 401 (before any routing, so a caller
without the key learns nothing of the routes); unknown path → 404; wrong method → 405;
no ``Upgrade`` → 426; another protocol → 400; a share name that is not one plain
directory name → 400. The share name comes from the client: it is percent-decoded once,
must be UTF-8, 1-64 characters, no ``/``, no control character, not ``.`` or ``..``.

The reverse direction (a desktop folder opened on the client): the desktop's
``qvd-share-to-client`` connects to nxagent's slave port inside the VM, which makes the
client's nxproxy run the client's slave server (``qvd.client.slaveserver``) on the
channel; it asks ``GET /shares/<name>`` with ``Upgrade: qvd:sftp/1.0`` and the same key
(``decide_from_desktop``: the same checks, the same name rules), then serves its folder
with ``sftp-server`` while the client mounts it with sshfs. ``request_head`` and
``parse_response_head`` are the asking side's halves.

Standard library only (the VMA runs on the image's own ``python3``).
"""

from __future__ import annotations

import hmac
import re
import urllib.parse
from dataclasses import dataclass

from qvd.vma.usbip import UsbipError, valid_busid

__all__ = [
    "MAX_HEAD",
    "MAX_HEADERS",
    "SFTP_PROTOCOL",
    "THROUGHPUT_PROTOCOL",
    "USBIP_PROTOCOL",
    "HeadReader",
    "RequestHead",
    "ShareRequest",
    "SlaveRefusal",
    "ThroughputRequest",
    "UsbRequest",
    "decide",
    "decide_from_desktop",
    "parse_head",
    "parse_response_head",
    "refusal_response",
    "request_head",
    "share_name",
    "switching_response",
]

MAX_HEAD = 16 * 1024
MAX_HEADERS = 50
MAX_NAME = 64
SFTP_PROTOCOL = "qvd:sftp/1.0"
USBIP_PROTOCOL = "qvd:usbip/1.0"
THROUGHPUT_PROTOCOL = "qvd:throughput/1.0"
MAX_THROUGHPUT_BYTES = 1 << 30

_REASONS = {
    101: "Switching Protocols",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    403: "Forbidden",
    409: "Conflict",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_VERSION = re.compile(r"HTTP/1\.[01]")
_CHARSET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,39}")
_ENCODED_SLASH = re.compile(r"%2f", re.IGNORECASE)


class SlaveRefusal(Exception):
    """A request the slave server refuses: ``status`` to answer, ``reason`` for the body."""

    def __init__(self, status: int, reason: str, *, allow: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.allow = allow  # the Allow header of a 405


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHead:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]  # (lower-case name, value), in order

    def header(self, name: str) -> str | None:
        """The one value of ``name``; a repeated header is refused (400)."""
        values = [value for key, value in self.headers if key == name]
        if len(values) > 1:
            raise SlaveRefusal(400, f"the {name} header is repeated")
        return values[0] if values else None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareRequest:
    """Mount the client's folder ``name`` on ``~/Redirected/<name>``."""

    name: str
    charset: str | None = None  # the client's file name charset, when it said one


@dataclass(frozen=True, slots=True)
class UsbRequest:
    """Attach the client's USB device ``busid`` (``X-QVD-USB-Busid``, validated) over
    USB/IP; None when the client did not say: an original QVD client, which then offers
    its device itself (the exporter-initiated ``OP_REQ_EXPORT`` after the 101)."""

    busid: str | None = None


@dataclass(frozen=True, slots=True)
class ThroughputRequest:
    """Measure the raw channel: send ``send`` bytes to the client, or read ``receive``
    bytes from it and answer the count."""

    send: int = 0
    receive: int = 0


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 32 or 127 <= code < 160 or char in "\u2028\u2029"


def parse_head(data: bytes) -> RequestHead:
    """One request head (``data`` ends with its blank line; CRLF or bare LF)."""
    if len(data) > MAX_HEAD:
        raise SlaveRefusal(431, f"the request head is longer than {MAX_HEAD} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise SlaveRefusal(400, "the request head is not ASCII") from None
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise SlaveRefusal(400, "empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise SlaveRefusal(400, "the request line is not 'METHOD TARGET HTTP/1.1'")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise SlaveRefusal(400, "the method is not a token")
    if not _TARGET.fullmatch(target):
        raise SlaveRefusal(400, "the target is not an absolute path")
    if not _VERSION.fullmatch(version):
        raise SlaveRefusal(400, "the version is not HTTP/1.0 or HTTP/1.1")
    if len(lines) - 1 > MAX_HEADERS:
        raise SlaveRefusal(400, f"more than {MAX_HEADERS} headers")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise SlaveRefusal(400, "a header line is not 'Name: value'")
        value = value.strip(" \t")
        if any(_is_control(c) and c != "\t" for c in value):
            raise SlaveRefusal(400, f"the {name} header holds a control character")
        headers.append((name.lower(), value))
    return RequestHead(method=method, target=target, version=version, headers=tuple(headers))


class HeadReader:
    """Collects bytes until one request head is complete (a tiny receive buffer)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, bytes] | None:
        """The head (with its blank line) and the bytes after it, once complete;
        ``None`` while more is needed. ``b""`` means the peer closed (400)."""
        if not data:
            raise SlaveRefusal(400, "the connection closed before the request head ended")
        self._buffer += data
        ends = [
            (index + len(mark))
            for mark in (b"\r\n\r\n", b"\n\n")
            if (index := self._buffer.find(mark)) >= 0
        ]
        if ends:
            end = min(ends)
            if end > MAX_HEAD:
                raise SlaveRefusal(431, f"the request head is longer than {MAX_HEAD} bytes")
            return bytes(self._buffer[:end]), bytes(self._buffer[end:])
        if len(self._buffer) > MAX_HEAD:
            raise SlaveRefusal(431, f"the request head is longer than {MAX_HEAD} bytes")
        return None


def share_name(encoded: str) -> str:
    """The share name of ``/shares/<encoded>``, decoded once and checked."""
    if "/" in encoded or _ENCODED_SLASH.search(encoded):
        raise SlaveRefusal(400, "a share name is one directory name: no '/'")
    if re.search(r"%(?![0-9A-Fa-f]{2})", encoded):
        raise SlaveRefusal(400, "the share name holds a bad percent escape")
    try:
        name = urllib.parse.unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SlaveRefusal(400, "the share name is not UTF-8") from None
    if not 1 <= len(name) <= MAX_NAME:
        raise SlaveRefusal(400, f"a share name has 1 to {MAX_NAME} characters")
    if name in (".", "..") or "/" in name:
        raise SlaveRefusal(400, "a share name is one plain directory name")
    if any(_is_control(c) for c in name):
        raise SlaveRefusal(400, "the share name holds a control character")
    return name


def _upgrade(head: RequestHead, protocol: str) -> str | None:
    """The charset parameter of ``Upgrade: <protocol>[;charset=…]`` (None if absent)."""
    value = head.header("upgrade")
    if value is None:
        raise SlaveRefusal(426, f"this route needs 'Upgrade: {protocol}'")
    offered, _, params = value.partition(";")
    if offered.strip().lower() != protocol:
        raise SlaveRefusal(400, f"this route speaks only {protocol}")
    charset = None
    for param in filter(None, (p.strip() for p in params.split(";"))):
        key, equals, val = param.partition("=")
        if not equals or key.strip().lower() != "charset":
            raise SlaveRefusal(400, "the only Upgrade parameter is charset=")
        val = val.strip().strip('"')
        if not _CHARSET.fullmatch(val):
            raise SlaveRefusal(400, "the charset is not a charset name")
        charset = val
    return charset


def _authorized(head: RequestHead, key: str) -> bool:
    value = head.header("authorization")
    if value is None or not key:
        return False
    scheme, _, given = value.partition(" ")
    if scheme.lower() != "basic":
        return False
    return hmac.compare_digest(given.strip().encode(), key.encode())


def _throughput(head: RequestHead) -> ThroughputRequest:
    if head.method != "POST":
        raise SlaveRefusal(405, "throughput is measured with POST", allow="POST")
    _upgrade(head, THROUGHPUT_PROTOCOL)
    counts = []
    for name in ("x-qvd-send", "x-qvd-receive"):
        value = head.header(name) or "0"
        if not value.isdigit() or int(value) > MAX_THROUGHPUT_BYTES:
            raise SlaveRefusal(400, f"{name} is a byte count up to {MAX_THROUGHPUT_BYTES}")
        counts.append(int(value))
    if (counts[0] == 0) == (counts[1] == 0):
        raise SlaveRefusal(400, "say one of X-QVD-Send or X-QVD-Receive")
    return ThroughputRequest(send=counts[0], receive=counts[1])


def decide(head: RequestHead, key: str) -> ShareRequest | UsbRequest | ThroughputRequest:
    """What ``head`` asks for, or ``SlaveRefusal``. An empty ``key`` refuses everything."""
    if not _authorized(head, key):
        raise SlaveRefusal(401, "the slave key is missing or wrong")
    path = head.target.split("?", 1)[0]
    if path.startswith("/shares/"):
        if head.method != "PUT":
            raise SlaveRefusal(405, "shares are mounted with PUT", allow="PUT")
        name = share_name(path[len("/shares/") :])
        return ShareRequest(name=name, charset=_upgrade(head, SFTP_PROTOCOL))
    if path == "/usbip":
        if head.method != "POST":
            raise SlaveRefusal(405, "USB/IP is attached with POST", allow="POST")
        _upgrade(head, USBIP_PROTOCOL)
        busid = head.header("x-qvd-usb-busid")
        if busid is not None:
            try:
                valid_busid(busid)
            except UsbipError as exc:
                raise SlaveRefusal(400, f"X-QVD-USB-Busid: {exc}") from None
        return UsbRequest(busid)
    if path == "/throughput":
        return _throughput(head)
    raise SlaveRefusal(404, "no such route (the slave server serves /shares/<name> and /usbip)")


def decide_from_desktop(head: RequestHead, key: str) -> ShareRequest:
    """The client's slave server: what the desktop's ``head`` asks (only
    ``GET /shares/<name>``), or ``SlaveRefusal`` (the key first, as ``decide``)."""
    if not _authorized(head, key):
        raise SlaveRefusal(401, "the slave key is missing or wrong")
    path = head.target.split("?", 1)[0]
    if not path.startswith("/shares/"):
        raise SlaveRefusal(404, "no such route (the client serves GET /shares/<name>)")
    if head.method != "GET":
        raise SlaveRefusal(405, "a desktop folder is opened with GET", allow="GET")
    name = share_name(path[len("/shares/") :])
    return ShareRequest(name=name, charset=_upgrade(head, SFTP_PROTOCOL))


def request_head(method: str, path: str, key: str, protocol: str) -> bytes:
    """A request head (``path`` already percent-encoded; the raw key, as the original)."""
    for part in (method, path, key, protocol):
        if any(c in part for c in "\r\n\x00 "):
            raise ValueError("a request part holds a space or a line break")
    return (
        f"{method} {path} HTTP/1.1\r\nAuthorization: Basic {key}\r\n"
        f"Connection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
    ).encode("ascii")


def parse_response_head(data: bytes) -> tuple[int, int]:
    """The status and the (bounded) Content-Length of a response head; ValueError when
    it is not an HTTP/1.x response."""
    lines = data.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not _VERSION.fullmatch(parts[0]) or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = min(int(value.strip()), 4096)
    return int(parts[1]), length


def refusal_response(refusal: SlaveRefusal) -> bytes:
    """The final response for ``refusal``: the reason as a plain-text body."""
    body = (refusal.reason + "\n").encode()
    lines = [f"HTTP/1.1 {refusal.status} {_REASONS.get(refusal.status, 'Error')}"]
    if refusal.status == 401:
        lines.append('WWW-Authenticate: Basic realm="QVD slave channel"')
    if refusal.allow:
        lines.append(f"Allow: {refusal.allow}")
    lines += [
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def switching_response(protocol: str, ticket: str | None = None) -> bytes:
    """``101 Switching Protocols`` to ``protocol`` (a share's ticket is percent-encoded)."""
    lines = ["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", f"Upgrade: {protocol}"]
    if ticket is not None:
        lines.append(f"X-QVD-Share-Ticket: {urllib.parse.quote(ticket, safe='/')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
