"""Pure helpers: NX cookie rewrite, query rules, credentials, rate limits, TOTP,
route check, the handshake table."""

from __future__ import annotations

import base64

import pytest

from qvd.l7r.auth.credentials import Basic, Bearer, auth_extras, parse_authorization, split_login
from qvd.l7r.auth.totp import totp_code
from qvd.l7r.errors import Forbidden, Unauthorized, Unprocessable
from qvd.l7r.iproute import route_problem
from qvd.l7r.nxcookie import GreetingRewriter, NotNx, add_cookie
from qvd.l7r.params import client_params, vm_id_of
from qvd.l7r.states import TRANSITIONS, ConnectState, Handshake, IllegalMove
from qvd.loginlimit import FailureLimiter

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


def test_connect_params() -> None:
    query = [("qvd.client.link", "adsl"), ("id", "10"), ("custom.x", "")]
    assert vm_id_of(query) == 10
    assert client_params(query) == {"qvd.client.link": "adsl", "custom.x": ""}
    with pytest.raises(Unprocessable, match="parameter id is missing"):
        vm_id_of([("qvd.client.link", "adsl")])
    with pytest.raises(Unprocessable):
        vm_id_of([("id", "ten")])
    with pytest.raises(Forbidden, match="Invalid parameters: evil"):
        client_params([("evil", "1"), ("id", "1")])


def test_credentials() -> None:
    basic = "Basic " + base64.b64encode(b"Alice@Acme:pw:x").decode()
    assert parse_authorization(basic) == Basic(login="Alice@Acme", password="pw:x")
    bearer = parse_authorization("Bearer " + base64.b64encode(b"MYTOKEN123").decode())
    assert isinstance(bearer, Bearer)
    assert bearer.candidates[0] == "MYTOKEN123"
    for bad in (None, "", "Basic !!!", "Digest x", "Basic " + base64.b64encode(b"x").decode()):
        with pytest.raises(Unauthorized):
            parse_authorization(bad)
    kw = {"separators": "@#", "default_tenant": "default", "case_sensitive": False}
    assert split_login(" Alice@Acme ", **kw) == ("alice", "acme")  # type: ignore[arg-type]
    assert split_login("bob#t2", **kw) == ("bob", "t2")  # type: ignore[arg-type]
    assert split_login("Carol", **kw) == ("carol", "default")  # type: ignore[arg-type]
    extras = {"auth-" + b"LANG".hex(): base64.b64encode(b"es").decode(), "auth-zz": "x"}
    assert auth_extras(extras) == {"LANG": "es"}


def test_rate_limit_per_key_and_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(3, 60, lambda: now[0])
    for _ in range(3):
        assert limiter.blocked_for("user:a", "addr:1") == 0
        limiter.failed("user:a", "addr:1")
    assert limiter.blocked_for("user:a") == pytest.approx(60)
    assert limiter.blocked_for("addr:1") > 0
    assert limiter.blocked_for("user:b", "addr:2") == 0
    limiter.succeeded("user:a")
    assert limiter.blocked_for("user:a") == 0
    assert limiter.blocked_for("addr:1") > 0  # a success does not clear the address
    now[0] = 61
    assert limiter.blocked_for("addr:1") == 0


def test_totp_rfc6238_vector() -> None:
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp_code(secret, 59 // 30, 8) == "94287082"
    assert totp_code(secret, 1111111109 // 30, 8) == "07081804"


@pytest.mark.parametrize(
    ("address", "output", "ok"),
    [
        ("127.0.0.1", "", True),
        ("10.214.3.101", "10.214.3.101 dev qvdhab12 src 10.214.3.2 uid 0 \\    cache", True),
        ("8.8.8.8", "8.8.8.8 via 192.168.1.1 dev eth0 src 192.168.1.5", False),
        ("10.9.9.9", "unreachable 10.9.9.9 uid 0", False),
        ("nonsense", "", False),
    ],
)
def test_route_check(address: str, output: str, ok: bool) -> None:
    assert (route_problem(address, output) is None) is ok


def test_handshake_moves_and_texts() -> None:
    hs = Handshake(7)
    assert hs.move(ConnectState.ACQUIRED) == "Session acquired for VM_ID: 7"
    assert hs.move(ConnectState.ASSIGNING) == "Assigning VM 7 to host"
    with pytest.raises(IllegalMove):
        hs.move(ConnectState.CONNECTED)
    assert all(ConnectState.FAILED not in targets for targets in TRANSITIONS.values())


def test_verified_passwords_are_remembered_until_the_hash_changes() -> None:
    from qvd.l7r.auth.default import VerifiedCache

    cache = VerifiedCache(ttl=60)
    who = (1, "alice", "$argon2id$old")
    assert not cache.known(who, "pw")
    cache.remember(who, "pw")
    assert cache.known(who, "pw")
    assert not cache.known(who, "other")
    assert not cache.known((1, "alice", "$argon2id$new"), "pw")  # password changed
    expired = VerifiedCache(ttl=-1)
    expired.remember(who, "pw")
    assert not expired.known(who, "pw")
