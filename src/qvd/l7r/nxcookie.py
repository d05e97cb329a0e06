"""Give the NX session cookie to clients that do not send one (pure; no I/O).

Our VMA starts nxagent with ``cookie=<cookie>`` (and ``accept=<L7R address>``): a
waiting agent that is offered a wrong cookie aborts the session. Real QVD clients run
``nxproxy -S localhost:40`` without a cookie, so their first bytes after the 101 are

    NXPROXY-3.5.0-3.5.99 stream=default,data=default ␠

and with ``cookie=C`` in nxproxy's options (captured from nxproxy 3.5.99 on loopback):

    NXPROXY-3.5.0-3.5.99 cookie=C,stream=default,data=default ␠

nxcomp carries the cookie as the first item of the option list, the second
space-terminated word of the greeting. The L7R, which got the cookie from ``x_start``,
puts ``cookie=<cookie>,`` there (replacing any cookie the client sent) before the
greeting goes to the agent; everything after it is relayed untouched.
"""

from __future__ import annotations

import re

__all__ = ["MAX_GREETING", "GreetingRewriter", "NotNx", "add_cookie"]

MAX_GREETING = 1024
_GREETING = re.compile(rb"^(NXPROXY-[0-9.\-]+) ([^ ]*) ")


class NotNx(ValueError):
    """The client's first bytes are not an NX proxy greeting."""


def add_cookie(greeting: bytes, cookie: str) -> bytes:
    """``greeting`` (version, space, options, space, ...) with ``cookie`` first in its
    options; raises ``NotNx`` if it is not a complete greeting."""
    match = _GREETING.match(greeting)
    if match is None:
        raise NotNx(f"not an NX greeting: {greeting[:60]!r}")
    version, options = match.group(1), match.group(2)
    kept = [item for item in options.split(b",") if item and not item.startswith(b"cookie=")]
    items = [b"cookie=" + cookie.encode("ascii"), *kept]
    return version + b" " + b",".join(items) + b" " + greeting[match.end() :]


class GreetingRewriter:
    """Fed the client's bytes, holds them until the greeting is complete, then returns
    the rewritten greeting and passes everything else through."""

    def __init__(self, cookie: str) -> None:
        self._cookie = cookie
        self._held = bytearray()
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Bytes to send on to nxagent now (possibly none yet)."""
        if self.done:
            return data
        self._held += data
        if _GREETING.match(self._held) is None:
            if len(self._held) > MAX_GREETING or not self._could_be_greeting():
                raise NotNx(f"not an NX greeting: {bytes(self._held[:60])!r}")
            return b""
        self.done = True
        out = add_cookie(bytes(self._held), self._cookie)
        self._held.clear()
        return out

    def _could_be_greeting(self) -> bool:
        prefix = b"NXPROXY-"
        head = bytes(self._held[: len(prefix)])
        return prefix.startswith(head) or head.startswith(prefix)
