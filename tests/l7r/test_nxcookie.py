"""The NX cookie rewrite of the nxproxy greeting."""

from __future__ import annotations

import pytest

from qvd.l7r.nxcookie import GreetingRewriter, NotNx, add_cookie

COOKIE = "0123456789abcdef0123456789abcdef"
# captured from nxproxy -S on loopback, without and with cookie= in its options
PLAIN = b"NXPROXY-3.5.0-3.5.99 stream=default,data=default "
WITH = b"NXPROXY-3.5.0-3.5.99 cookie=" + COOKIE.encode() + b",stream=default,data=default "


def test_cookie_goes_where_nxproxy_puts_it() -> None:
    assert add_cookie(PLAIN, COOKIE) == WITH
    assert add_cookie(WITH.replace(COOKIE.encode(), b"f" * 32), COOKIE) == WITH
    cache = PLAIN + b"cachefile=C-ABC "
    assert add_cookie(cache, COOKIE) == WITH + b"cachefile=C-ABC "


def test_rewriter_holds_partial_greetings_then_passes_through() -> None:
    rw = GreetingRewriter(COOKIE)
    out = b"".join(rw.feed(PLAIN[i : i + 1]) for i in range(len(PLAIN)))
    assert out == WITH
    assert rw.feed(b"\x00\x01") == b"\x00\x01"
    with pytest.raises(NotNx):
        GreetingRewriter(COOKIE).feed(b"GET / HTTP/1.1\r\n")
