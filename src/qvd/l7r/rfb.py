"""The RFB (VNC) handshakes the L7R takes part in, without I/O (h11 style).

Two machines, one for each side of a browser session:

``VncAuthClient(password)``
    toward the VNC server in the VM (x11vnc): the version exchange (RFB 3.3, 3.7 or
    3.8), VNC authentication (security type 2) answered with the one-time password,
    and the SecurityResult. It ends right before ClientInit: the browser sends that.
    With ``early=True`` the client announces RFB 3.8 first (``initial()``), without
    waiting for the server's version, and then requires the server to speak 3.8:
    libvncserver (x11vnc) waits 100 ms for a client's first bytes before it greets
    (to tell a WebSocket or TLS client from a plain one), unless they come at once.

``BrowserGreeting()``
    toward the browser (noVNC): the L7R speaks as an RFB 3.8 server that offers only
    security type 1 (None) — the browser was authenticated by the portal — and ends
    right before the browser's ClientInit, which is then relayed to the VM.

Each has ``feed(data) -> bytes`` (what to send back; raises ``RfbError`` on anything
malformed or refused), ``done`` and, once done, ``leftover`` (bytes received beyond
the handshake, which belong to the next phase). Every length read from the peer is
bounded (``MAX_REASON``).
"""

from __future__ import annotations

import enum
import re
import struct

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = [
    "MAX_REASON",
    "RFB_38",
    "SECURITY_NONE",
    "SECURITY_VNC",
    "AuthenticationFailed",
    "BrowserGreeting",
    "RfbError",
    "VncAuthClient",
    "vnc_auth_response",
]

RFB_38 = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC = 2
MAX_REASON = 4096  # bytes of a server's failure reason we accept
_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")


class RfbError(Exception):
    """The peer broke the protocol or refused the handshake (``str`` says why)."""


class AuthenticationFailed(RfbError):
    """The VNC server refused the password."""


def _bit_reverse(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The 16-byte answer to a VNC challenge: DES-ECB of it, keyed with the password's
    first 8 bytes (zero-padded), each key byte's bits reversed (the RFB variant).

    Single DES is TripleDES with the 8-byte key repeated three times (K1=K2=K3),
    never a hand-written cipher.
    """
    if len(challenge) != 16:
        raise RfbError(f"a VNC challenge has 16 bytes, not {len(challenge)}")
    raw = password.encode("latin-1")[:8].ljust(8, b"\0")
    key = bytes(_bit_reverse(b) for b in raw)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305 -- RFB's DES
    return encryptor.update(challenge) + encryptor.finalize()


def _parse_version(data: bytes) -> tuple[int, int]:
    match = _VERSION.fullmatch(data)
    if match is None:
        raise RfbError(f"not an RFB protocol version: {data!r}")
    return int(match.group(1)), int(match.group(2))


def _negotiated(major: int, minor: int) -> int:
    """The RFB minor version both sides then speak (3.3, 3.7 or 3.8)."""
    if major < 3:
        raise RfbError(f"unsupported RFB version {major}.{minor}")
    if major > 3 or minor >= 8:
        return 8
    if minor == 7:
        return 7
    return 3  # the spec: any other 3.x is taken as 3.3


class _Buffer:
    """Bytes received and not yet consumed; reads take exact lengths or nothing."""

    def __init__(self) -> None:
        self.data = bytearray()

    def take(self, size: int) -> bytes | None:
        if len(self.data) < size:
            return None
        chunk = bytes(self.data[:size])
        del self.data[:size]
        return chunk

    def peek_u32(self) -> int | None:
        if len(self.data) < 4:
            return None
        value: int = struct.unpack(">I", self.data[:4])[0]
        return value


def _take_reason(buffer: _Buffer) -> str | None:
    """A U32-length-prefixed reason string, or None while incomplete."""
    length = buffer.peek_u32()
    if length is None:
        return None
    if length > MAX_REASON:
        raise RfbError(f"the server's reason string is too long ({length} bytes)")
    if len(buffer.data) < 4 + length:
        return None
    buffer.take(4)
    raw = buffer.take(length) or b""
    return raw.decode("utf-8", "replace")


class _Client(enum.Enum):
    VERSION = "version"
    TYPES = "types"
    TYPES_FAILED = "types-failed"
    CHALLENGE = "challenge"
    RESULT = "result"
    RESULT_REASON = "result-reason"
    DONE = "done"


class VncAuthClient:
    """The client side of the handshake with VNC authentication (see module doc)."""

    def __init__(self, password: str, *, early: bool = False) -> None:
        if not password or len(password) > 8 or not password.isascii():
            raise ValueError("a VNC password is 1 to 8 ASCII characters")
        self._password = password
        self._early = early
        self._state = _Client.VERSION
        self._buffer = _Buffer()
        self._minor = 8
        self.leftover = b""

    def initial(self) -> bytes:
        """What the client says before the server's first bytes: its version when
        ``early``, else nothing."""
        return RFB_38 if self._early else b""

    @property
    def done(self) -> bool:
        return self._state is _Client.DONE

    @property
    def minor(self) -> int:
        """The negotiated RFB minor version (3, 7 or 8)."""
        return self._minor

    def feed(self, data: bytes) -> bytes:
        if self.done:
            raise RfbError("the handshake is over; further bytes are the session's")
        self._buffer.data += data
        out = bytearray()
        while True:
            before = self._state
            out += self._step()
            if self._state is _Client.DONE:
                self.leftover = bytes(self._buffer.data)
                self._buffer.data.clear()
                break
            if self._state is before:
                break
        return bytes(out)

    def _step(self) -> bytes:
        buf = self._buffer
        state = self._state
        if state is _Client.VERSION:
            raw = buf.take(12)
            if raw is None:
                return b""
            major, minor = _parse_version(raw)
            self._minor = _negotiated(major, minor)
            self._state = _Client.TYPES
            if not self._early:
                return b"RFB 003.%03d\n" % self._minor
            if self._minor != 8:  # too late to answer in its version: 3.8 was said
                raise RfbError(f"the VNC server speaks RFB {major}.{minor}; the L7R announced 3.8")
            return b""
        if state is _Client.TYPES:
            return self._security_types()
        if state is _Client.TYPES_FAILED:
            reason = _take_reason(buf)
            if reason is None:
                return b""
            raise RfbError(f"the VNC server refused the connection: {reason}")
        if state is _Client.CHALLENGE:
            challenge = buf.take(16)
            if challenge is None:
                return b""
            self._state = _Client.RESULT
            return vnc_auth_response(self._password, challenge)
        if state is _Client.RESULT:
            raw = buf.take(4)
            if raw is None:
                return b""
            (result,) = struct.unpack(">I", raw)
            if result == 0:
                self._state = _Client.DONE
                return b""
            if self._minor < 8:
                raise AuthenticationFailed("the VNC server refused the password")
            self._state = _Client.RESULT_REASON
            return b""
        if state is _Client.RESULT_REASON:
            reason = _take_reason(buf)
            if reason is None:
                return b""
            raise AuthenticationFailed(f"the VNC server refused the password: {reason}")
        return b""  # pragma: no cover -- DONE is handled by feed

    def _security_types(self) -> bytes:
        buf = self._buffer
        if self._minor == 3:  # the server decides: one U32 type
            raw = buf.take(4)
            if raw is None:
                return b""
            (kind,) = struct.unpack(">I", raw)
            if kind == 0:
                self._state = _Client.TYPES_FAILED
                return b""
            if kind != SECURITY_VNC:
                raise RfbError(f"the VNC server offers security type {kind}, not VNC auth")
            self._state = _Client.CHALLENGE
            return b""
        if not buf.data:
            return b""
        count = buf.data[0]
        if count == 0:
            buf.take(1)
            self._state = _Client.TYPES_FAILED
            return b""
        types = buf.take(1 + count)
        if types is None:
            return b""
        offered = list(types[1:])
        if SECURITY_VNC not in offered:
            raise RfbError(f"the VNC server offers no VNC authentication (types {offered})")
        self._state = _Client.CHALLENGE
        return bytes([SECURITY_VNC])


class _Server(enum.Enum):
    VERSION = "version"
    CHOICE = "choice"
    DONE = "done"


class BrowserGreeting:
    """The server side toward the browser: RFB 3.8, security type None only."""

    def __init__(self) -> None:
        self._state = _Server.VERSION
        self._buffer = _Buffer()
        self._minor = 8
        self.leftover = b""

    def initial(self) -> bytes:
        """What the server says first: its protocol version."""
        return RFB_38

    @property
    def done(self) -> bool:
        return self._state is _Server.DONE

    def feed(self, data: bytes) -> bytes:
        if self.done:
            raise RfbError("the handshake is over; further bytes are the session's")
        self._buffer.data += data
        out = b""
        if self._state is _Server.VERSION:
            raw = self._buffer.take(12)
            if raw is None:
                return b""
            major, minor = _parse_version(raw)
            if major != 3:
                raise RfbError(f"unsupported RFB version {major}.{minor} from the browser")
            self._minor = 8 if minor >= 8 else (7 if minor == 7 else 3)
            if self._minor == 3:  # the server picks the type: None, no SecurityResult
                self._finish()
                return struct.pack(">I", SECURITY_NONE)
            self._state = _Server.CHOICE
            out = bytes([1, SECURITY_NONE])
        if self._state is _Server.CHOICE:
            raw = self._buffer.take(1)
            if raw is None:
                return out
            if raw[0] != SECURITY_NONE:
                raise RfbError(f"the browser chose security type {raw[0]}, only None is offered")
            self._finish()
            if self._minor == 8:  # 3.7 sends no SecurityResult for None
                out += struct.pack(">I", 0)
        return out

    def _finish(self) -> None:
        self._state = _Server.DONE
        self.leftover = bytes(self._buffer.data)
        self._buffer.data.clear()
