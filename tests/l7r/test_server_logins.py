"""Logins at the L7R: a burst is served in arrival order, and an older password hash
is renewed when its user logs in."""

from __future__ import annotations

import base64
import json
import selectors
import ssl

import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import text

from qvd.db import hash_password, verify_password
from qvd.l7r import server as l7r_server
from qvd.l7r.auth import default as default_plugin
from tests.l7r.conftest import PASSWORD, Lab
from tests.l7r.test_server import read_response

BURST = 30


def list_request(login: str, password: str = PASSWORD) -> bytes:
    basic = base64.b64encode(f"{login}:{password}".encode()).decode()
    return (
        f"GET /qvd/list_of_vm HTTP/1.1\r\nHost: l7r\r\nAuthorization: Basic {basic}\r\n\r\n"
    ).encode()


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The argon2 checks begun, one entry each (the real check still runs)."""
    checks: list[str] = []
    real = default_plugin.verify_password

    def counting(stored: str | None, password: str) -> bool:
        checks.append(password)  # list.append is atomic: no lock needed
        return real(stored, password)

    monkeypatch.setattr(default_plugin, "verify_password", counting)
    return checks


# The heads are sent only once every TLS handshake is done: on a loaded machine that can
# take longer than the lab's 2 s head timeout, which would answer the first ones 408.
@pytest.mark.l7r_config(**{"internal.l7r.timeout.request": "60"})
def test_a_login_burst_is_served_in_arrival_order(lab: Lab, verified: list[str]) -> None:
    """Each reply comes before most of the later logins are checked: when the k-th
    reply arrives, at most k + (twice the login workers + a few) checks have begun. Served all
    at once (every login, then every reply, sharing the CPU), the first reply would
    come only when nearly all the burst had been checked."""
    users = [f"storm{i:02d}" for i in range(BURST)]
    stored = hash_password(PASSWORD)
    with lab.engine.begin() as conn:
        for login in users:
            conn.execute(
                text("INSERT INTO users (tenant_id, login, password) VALUES (1, :l, :p)"),
                {"l": login, "p": stored},
            )
    socks = [lab.connect() for _ in users]  # TLS handshakes done before the burst
    # Generous for a loaded machine (the reader of the replies shares the CPU with the
    # checks): served all at once, the first reply would see about BURST checks begun.
    window = 2 * l7r_server.LOGIN_WORKERS + 8
    seen_at_reply: list[int] = []
    with selectors.DefaultSelector() as sel:
        for index, (sock, login) in enumerate(zip(socks, users, strict=True)):
            sock.sendall(list_request(login))
            sel.register(sock, selectors.EVENT_READ, index)
        left = set(range(BURST))
        while left:
            for key, _ in sel.select(timeout=60):
                sock = key.fileobj
                assert isinstance(sock, ssl.SSLSocket)
                head, body = read_response(sock, bytearray())
                seen_at_reply.append(len(verified))
                assert head.startswith(b"HTTP/1.1 200 OK"), head
                assert json.loads(body) == []
                sel.unregister(sock)
                left.discard(key.data)
    for sock in socks:
        sock.close()
    assert sorted(verified) == [PASSWORD] * BURST
    late = [(k, seen) for k, seen in enumerate(seen_at_reply, 1) if seen > k + window]
    assert not late, f"replies waited for later logins (reply, checks begun): {late}"


def test_an_older_password_hash_is_renewed_at_login(lab: Lab) -> None:
    old = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash("old-style")
    with lab.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (tenant_id, login, password) VALUES (1, 'carol', :p)"),
            {"p": old},
        )
    for _ in range(2):  # the renewed hash serves the next login too
        with lab.connect() as sock:
            sock.sendall(list_request("carol", "old-style"))
            head, _ = read_response(sock, bytearray())
        assert head.startswith(b"HTTP/1.1 200 OK"), head
    with lab.engine.begin() as conn:
        stored = conn.execute(text("SELECT password FROM users WHERE login = 'carol'")).scalar_one()
    assert stored != old
    params = extract_parameters(stored)
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19 * 1024, 2, 1)
    assert verify_password(stored, "old-style")
