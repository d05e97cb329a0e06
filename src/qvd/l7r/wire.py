"""The L7R's HTTP/1.1 server side as a pure state machine over h11 (no I/O here).

Real QVD clients send requests h11 alone refuses or mis-frames (real-clients.md):
no ``Host`` header (every Perl request, the C client's upgrade), bare-LF line
endings, and NX bytes right behind the upgrade request. So this layer cuts the byte
stream into request heads itself, supplies a ``Host`` line when none is present,
refuses anything but ``HTTP/1.1`` (505, as QVD did) and hands h11 one head at a
time. Bytes after a head stay here: they are the next request on a keep-alive
connection, or, after a ``101``, the first NX bytes for the VM (``trailing_data``).

    conn = ServerConnection()
    conn.receive_data(data)               # b"" means the peer closed
    event = conn.next_event()             # Request | NEED_DATA | CLOSED | PAUSED
    out = conn.respond(200, body, "application/json")
    out = conn.inform("Starting virtual machine")     # 102 Processing
    out = conn.switch(slave_key)                       # 101, then PAUSED for good

Limits (``HeadLimits``), checked line by line as bytes arrive, so a hostile head is
refused as soon as it crosses one, never buffered whole: request line 8 KiB (414),
header line 8 KiB, 100 header lines, 16 KiB per head (431), no body at all (413: every
L7R request is a GET), and at most 16 KiB of blank lines before a request (400; a few
are allowed, as HTTP asks). Blank lines are skipped in a loop: no input can make the
parser recurse. The time a head may take is the server's (408, slow-loris guard).
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass, field
from enum import Enum

import h11

from qvd.l7r.errors import (
    BadRequest,
    ContentTooLarge,
    HeadTooLarge,
    ProtocolError,
    UriTooLong,
    VersionNotSupported,
)

__all__ = [
    "CLOSED",
    "MAX_HEAD",
    "NEED_DATA",
    "PAUSED",
    "REASONS",
    "HeadLimits",
    "Request",
    "ServerConnection",
    "Signal",
    "basic_login",
]

MAX_HEAD = 16 * 1024
_REQUEST_LINE = re.compile(rb"^([!-~]+) ([!-~]+) HTTP/(\d)\.(\d)\r?$")
_FILLER_HOST = b"Host: qvd-l7r"

REASONS: dict[int, bytes] = {
    101: b"Switching Protocols",
    102: b"Processing",
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    422: b"Unprocessable Entity",
    426: b"Upgrade Required",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


class Signal(Enum):
    """What ``next_event`` says when it has no request to give."""

    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA = Signal.NEED_DATA
CLOSED = Signal.CLOSED
PAUSED = Signal.PAUSED


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadLimits:
    """The most a request head may hold (bytes; CR and LF not counted in line lengths)."""

    head: int = MAX_HEAD
    request_line: int = 8 * 1024
    header_line: int = 8 * 1024
    headers: int = 100
    blank: int = MAX_HEAD  # blank-line bytes tolerated before a request line


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One request head: the path, the query as (key, value) pairs, lower-case headers."""

    method: str
    target: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def wants_upgrade(self) -> bool:
        """``Connection: Upgrade`` and ``Upgrade: QVD/1.0`` are both present."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        return "upgrade" in tokens and self.headers.get("upgrade", "").strip() == "QVD/1.0"

    def param(self, key: str) -> str | None:
        """The last value of ``key`` in the query, if present."""
        return dict(self.query).get(key)


def _split_target(target: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    path, _, query = target.partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict")
    return urllib.parse.unquote(path), tuple(pairs)


def _with_host(head: bytes) -> bytes:
    """``head`` with a filler Host line when it has none (h11 insists on one)."""
    lines = head.split(b"\n")
    request_line = lines[0]
    match = _REQUEST_LINE.match(request_line)
    if match is None:
        raise BadRequest(f"malformed request line {request_line[:80]!r}")
    if (match.group(3), match.group(4)) != (b"1", b"1"):
        raise VersionNotSupported(
            f"only HTTP/1.1 is served, not HTTP/{match.group(3).decode()}.{match.group(4).decode()}"
        )
    if len(lines) > 1 and lines[1][:1] in (b" ", b"\t"):
        raise BadRequest("the first header line starts with whitespace (obsolete line folding)")
    for line in lines[1:]:
        if line[:5].lower() == b"host:":
            return head
    eol = b"\r\n" if request_line.endswith(b"\r") else b"\n"
    rest = head[len(request_line) + 1 :]
    return request_line.rstrip(b"\r") + eol + _FILLER_HOST + eol + rest


class ServerConnection:
    """One client connection, from its first request to the end or to the 101."""

    def __init__(self, limits: HeadLimits | None = None) -> None:
        self.limits = limits or HeadLimits()
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.head)
        self._buffer = bytearray()
        self._eof = False
        self._in_request = False
        self._switched = False
        self.keep_alive = True
        # the scan of the head being received: where its current line starts, how many
        # lines it has so far, and how many blank-line bytes came before it
        self._line_start = 0
        self._lines = 0
        self._blank = 0

    # ---- input ------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; ``b""`` when it closed its side."""
        if data:
            self._buffer += data
        else:
            self._eof = True

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the head of the request that was switched (NX data)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    @property
    def pending_bytes(self) -> int:
        """Bytes received and not yet taken (a head in progress, or early NX data)."""
        return len(self._buffer)

    @property
    def has_partial_head(self) -> bool:
        """Bytes of a request head are waiting (the slow-loris clock then ends in 408)."""
        return bool(self._buffer) and not self._in_request and not self._switched

    def next_event(self) -> Request | Signal:
        """The next request, or why there is none. Raises ``ProtocolError`` only."""
        if self._switched or self._in_request:
            return PAUSED
        head = self._scan()
        if head is None:
            if self._eof:
                if self._buffer.strip(b"\r\n"):
                    raise BadRequest("connection closed in the middle of a request head")
                return CLOSED
            return NEED_DATA
        try:
            return self._parse(head)
        except ProtocolError:
            raise
        except Exception as exc:  # a parser bug must still answer 400, never escape
            raise BadRequest(f"malformed request ({type(exc).__name__})") from None

    def _scan(self) -> bytes | None:
        """Cut the next complete head off the buffer (None: not there yet), checking
        each line against the limits as it completes, and the unfinished one too."""
        limits = self.limits
        buffer = self._buffer
        while True:
            newline = buffer.find(b"\n", self._line_start)
            if newline < 0:
                break
            length = newline - self._line_start
            if length and buffer[newline - 1] == 0x0D:  # CR LF
                length -= 1
            if length == 0 and self._lines == 0:  # a blank line before the request line
                self._blank += newline + 1
                if self._blank > limits.blank:
                    raise BadRequest(f"over {limits.blank} bytes of blank lines, no request")
                del buffer[: newline + 1]
                continue
            if length == 0:  # the empty line that ends the head
                head = bytes(buffer[: newline + 1])
                del buffer[: newline + 1]
                self._line_start = self._lines = self._blank = 0
                return head
            self._check_line(self._lines, length)
            self._lines += 1
            self._line_start = newline + 1
            if newline + 1 > limits.head:
                raise HeadTooLarge(f"request head over {limits.head} bytes")
        if self._lines == 0 and bytes(buffer) in (b"", b"\r"):
            return None  # nothing, or a lone CR (the start of a blank line)
        self._check_line(self._lines, len(buffer) - self._line_start)
        if len(buffer) > limits.head:
            raise HeadTooLarge(f"request head over {limits.head} bytes")
        return None

    def _check_line(self, index: int, length: int) -> None:
        limits = self.limits
        if index == 0:
            if length > limits.request_line:
                raise UriTooLong(f"request line over {limits.request_line} bytes")
            return
        if length > limits.header_line:
            raise HeadTooLarge(f"header line over {limits.header_line} bytes")
        if index > limits.headers:
            raise HeadTooLarge(f"over {limits.headers} header lines")

    def _parse(self, head: bytes) -> Request:
        self._h11.receive_data(_with_host(head))
        try:
            event = self._h11.next_event()
            if not isinstance(event, h11.Request):
                raise BadRequest("incomplete request head")
            headers: dict[str, str] = {}
            for name, value in event.headers:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
                raise ContentTooLarge("request bodies are not accepted (the L7R serves GET only)")
            end = self._h11.next_event()
            if not isinstance(end, h11.EndOfMessage):
                raise BadRequest("unexpected request body")
        except h11.RemoteProtocolError as exc:
            raise BadRequest(f"malformed request: {exc}") from None
        target = event.target.decode("latin-1")
        try:
            path, query = _split_target(target)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"malformed query string: {exc}") from None
        if headers.get("host") == _FILLER_HOST[6:].decode():
            del headers["host"]
        self._in_request = True
        return Request(
            method=event.method.decode("latin-1"),
            target=target,
            path=path,
            query=query,
            headers=headers,
        )

    # ---- output -----------------------------------------------------------------------
    def inform(self, info: str) -> bytes:
        """A ``102 Processing`` carrying ``X-QVD-VM-Info`` (no body)."""
        return self._h11.send(
            h11.InformationalResponse(
                status_code=102, reason=REASONS[102], headers=[("X-QVD-VM-Info", _clean(info))]
            )
        )

    def switch(self, slave_key: str) -> bytes:
        """The ``101 Switching Protocols``; the connection is then raw bytes."""
        out = self._h11.send(
            h11.InformationalResponse(
                status_code=101, reason=REASONS[101], headers=[("X-QVD-Slave-Key", slave_key)]
            )
        )
        self._switched = True
        self._in_request = False
        return out

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain",
        headers: list[tuple[str, str]] | None = None,
    ) -> bytes:
        """A final response with Content-Length; the connection is then ready for the
        next request unless the client or a protocol error asked to close it."""
        all_headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        all_headers += headers or []
        try:
            out = self._h11.send(
                h11.Response(
                    status_code=status, reason=REASONS.get(status, b""), headers=all_headers
                )
            )
            out += self._h11.send(h11.Data(data=body)) if body else b""
            out += self._h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # No request was read (error before the head was complete): write by hand.
            reason = REASONS.get(status, b"").decode()
            lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in all_headers)]
            self.keep_alive = False
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        self._in_request = False
        if self.keep_alive and self._h11.states == {h11.CLIENT: h11.DONE, h11.SERVER: h11.DONE}:
            self._h11.start_next_cycle()
        else:
            self.keep_alive = False
        return out

    def fail(self, error: ProtocolError) -> bytes:
        """The answer to a broken request; the connection must close after it."""
        self.keep_alive = False
        return self.respond(error.status, (error.message + "\n").encode())


def _clean(text: str) -> str:
    """A header value: one line, printable."""
    return "".join(c if " " <= c <= "~" else " " for c in text)


def basic_login(authorization: str) -> str:
    """The login an ``Authorization: Basic`` value claims (unchecked; never the
    password); for any other value its scheme, lower-cased, or "" when empty."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return scheme.lower()[:16]
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "basic"
    return decoded.partition(b":")[0][:256].decode("latin-1")
