"""Attack test: telling which logins exist from how fast a wrong password is refused.

On main an unknown user was refused in 0.01 ms and a known one after its argon2 check
(~160 ms): timing listed the logins of every tenant although both answered "wrong login
or password". Now a login with no hash to check costs one check against a dummy hash
of the same parameters. Through the real L7R (TLS, PostgreSQL; the failed-login limit
off so that no backoff answers early), on two keep-alive connections, interleaved
wrong-password logins for a known user and for unknown ones (half of them the login of
a user of another tenant); the medians must be of the same order (a property of the
code path, with a generous margin for a shared machine, not a speed threshold).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, hash_password
from qvd.l7r import L7rServer
from tests.l7r.conftest import l7r_config, seed
from tests.l7r.ldap_fixture import basic
from tests.security.logins import KeepAlive

SAMPLES = 25


@pytest.fixture
def l7r_port(db: DatabaseTarget, engine: Engine, tmp_path: Path) -> Iterator[int]:
    seeded = seed(engine)
    with engine.begin() as conn:  # "carol" exists, but in another tenant
        tenant = conn.execute(
            text("INSERT INTO tenants (name) VALUES ('other') RETURNING id")
        ).scalar_one()
        conn.execute(
            text("INSERT INTO users (tenant_id, login, password) VALUES (:t, 'carol', :p)"),
            {"t": tenant, "p": hash_password("x")},
        )
    config = l7r_config(tmp_path / "run", **{"l7r.auth.rate_limit.attempts": "0"})
    server = L7rServer(config, db, seeded.host_id, "127.0.0.1")
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def _timed(conn: KeepAlive, login: str) -> float:
    started = time.perf_counter()
    reply = conn.get("/qvd/list_of_vm", basic(login, "not-the-password"))
    elapsed = time.perf_counter() - started
    assert reply.status == 401
    assert b"wrong login or password" in reply.body, reply.body
    return elapsed


def test_unknown_users_cost_what_known_users_cost(l7r_port: int) -> None:
    known: list[float] = []
    unknown: list[float] = []
    with KeepAlive(l7r_port) as to_known, KeepAlive(l7r_port) as to_unknown:
        _timed(to_known, "alice")  # warm-up (plugin chain, the dummy hash)
        _timed(to_unknown, "nobody")
        for i in range(SAMPLES):
            known.append(_timed(to_known, "alice"))
            unknown.append(_timed(to_unknown, "carol" if i % 2 else f"nobody{i}"))
    known_median, unknown_median = statistics.median(known), statistics.median(unknown)
    figures = f"median unknown {unknown_median * 1000:.1f} ms, known {known_median * 1000:.1f} ms"
    assert unknown_median >= 0.5 * known_median, figures
    assert known_median >= 0.5 * unknown_median, figures
