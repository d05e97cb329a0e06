"""Attack test: a keep-alive L7R connection outliving the block of its user.

On main the L7R authenticated the first request of a connection and answered every
later request with the same credentials from that principal, so a user blocked (or
deleted, or whose password an administrator reset, or whose tenant was blocked) kept
listing, starting and stopping VMs for as long as the connection stayed open. Now each
request re-reads the user. Against the real L7R (TLS, PostgreSQL): one keep-alive
connection, ``list_of_vm`` answers, the user's state changes in the database, the next
request on the same connection is refused with QVD's 401 for a refused login.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from qvd.db import hash_password
from tests.l7r.conftest import PASSWORD, Lab
from tests.l7r.conftest import lab as lab
from tests.l7r.ldap_fixture import basic, refused
from tests.security.logins import KeepAlive

CHANGES = {
    "user blocked": ("UPDATE users SET blocked = true WHERE id = :u", b"is blocked"),
    "tenant blocked": (
        "UPDATE tenants SET blocked = true WHERE id = (SELECT tenant_id FROM users WHERE id = :u)",
        b"tenant of this user is blocked",
    ),
    "password reset": ("UPDATE users SET password = :p WHERE id = :u", b"password of this user"),
    "user deleted": ("DELETE FROM users WHERE id = :u", b"no longer exists"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_next_request_on_a_kept_connection_sees_the_change(lab: Lab, change: str) -> None:
    statement, reason = CHANGES[change]
    credentials = basic("alice", PASSWORD)
    with KeepAlive(lab) as conn:
        first = conn.get("/qvd/list_of_vm", credentials)
        assert first.status == 200, first
        assert b"alice-desk" in first.body
        again = conn.get("/qvd/list_of_vm", credentials)  # the kept principal still serves
        assert again.status == 200
        with lab.engine.begin() as db:
            db.execute(text(statement), {"u": lab.seed.user_id, "p": hash_password("new-one")})
        refused(conn.get("/qvd/list_of_vm", credentials), reason)
        refused(conn.get("/qvd/create_auth_token", credentials), reason)


def test_an_untouched_user_keeps_its_connection(lab: Lab) -> None:
    credentials = basic("alice", PASSWORD)
    with KeepAlive(lab) as conn:
        for _ in range(3):
            assert conn.get("/qvd/list_of_vm", credentials).status == 200
        with lab.engine.begin() as db:  # another user's change is not this one's
            db.execute(text("UPDATE users SET blocked = true WHERE login = 'bob'"))
        assert conn.get("/qvd/list_of_vm", credentials).status == 200
