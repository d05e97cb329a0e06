"""Attack test: widening a bearer token with ``create_auth_token``, and keeping tokens
alive across a password change.

On main ``create_auth_token`` called with a token minted a fresh unbound 24 h token, so
the token a desktop's VMA receives (bound to that VM, short-lived) became a key to every
VM of the user for a day; and no token ended when the user's password was changed. Now
a token minted from a token keeps its VM, its single use and at most its expiry, and
every token ends with the password it was issued under. Against the real L7R (TLS,
PostgreSQL): the VM-bound token the connect flow hands the VMA (made here by the same
``issue_token``) is used to mint another; the new one is bound and no longer-lived, and
is refused for the user's other VM; after a password change both are refused.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import text

from qvd.db import hash_password
from qvd.l7r.auth.tokens import issue_token, token_digest
from tests.l7r.conftest import PASSWORD, Lab
from tests.l7r.conftest import lab as lab
from tests.l7r.ldap_fixture import basic, bearer, refused
from tests.security.logins import request


def _token_row(lab: Lab, token: str) -> tuple[int | None, dt.datetime, bool]:
    with lab.engine.connect() as conn:
        row = conn.execute(
            text("SELECT vm_id, expiration, multi_use FROM user_tokens WHERE token_sha256 = :d"),
            {"d": token_digest(token)},
        ).one()
    return row[0], row[1], row[2]


def _second_vm(lab: Lab) -> int:
    with lab.engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO vms (name, user_id, osf_id) "
                    "SELECT 'alice-other', user_id, osf_id FROM vms WHERE id = :v RETURNING id"
                ),
                {"v": lab.seed.vm_id},
            ).scalar_one()
        )


def _mint(lab: Lab, authorization: str) -> str:
    reply = request(lab, "/qvd/create_auth_token", authorization)
    assert reply.status == 200, reply
    return str(json.loads(reply.body)["auth_token"])


def test_a_token_minted_from_a_token_is_no_wider(lab: Lab) -> None:
    other_vm = _second_vm(lab)
    with lab.engine.begin() as conn:  # what the connect flow gives the VMA of alice-desk
        parent = issue_token(
            conn, lab.seed.user_id, multi_use=True, vm_id=lab.seed.vm_id,
            lifetime=dt.timedelta(hours=1),
        )  # fmt: skip
    parent_vm, parent_expiry, _ = _token_row(lab, parent)
    child = _mint(lab, bearer(parent))
    child_vm, child_expiry, child_multi = _token_row(lab, child)
    assert child_vm == parent_vm == lab.seed.vm_id
    assert child_expiry <= parent_expiry
    assert child_multi
    grandchild_vm, grandchild_expiry, _ = _token_row(lab, _mint(lab, bearer(child)))
    assert (grandchild_vm, grandchild_expiry <= parent_expiry) == (lab.seed.vm_id, True)
    # the minted token opens only its own VM
    wrong = request(lab, f"/qvd/connect_to_vm?id={other_vm}", bearer(child), upgrade=True)
    assert wrong.status == 403, wrong
    assert b"does not match" in wrong.body


def test_a_single_use_token_mints_a_single_use_one(lab: Lab) -> None:
    with lab.engine.begin() as conn:
        once = issue_token(conn, lab.seed.user_id, multi_use=False, vm_id=lab.seed.vm_id)
    child = _mint(lab, bearer(once))
    assert _token_row(lab, child)[0] == lab.seed.vm_id
    assert _token_row(lab, child)[2] is False
    refused(request(lab, "/qvd/list_of_vm", bearer(once)), b"already used")


def test_tokens_die_with_the_password(lab: Lab) -> None:
    with lab.engine.begin() as conn:
        bound = issue_token(conn, lab.seed.user_id, multi_use=True, vm_id=lab.seed.vm_id)
    unbound = _mint(lab, basic("alice", PASSWORD))  # a password login may mint a free one
    assert _token_row(lab, unbound)[0] is None
    for token in (bound, unbound):
        assert request(lab, "/qvd/list_of_vm", bearer(token)).status == 200
    with lab.engine.begin() as conn:  # an administrator sets a new password
        conn.execute(
            text("UPDATE users SET password = :p WHERE id = :u"),
            {"p": hash_password("a-new-password"), "u": lab.seed.user_id},
        )
    for token in (bound, unbound):
        refused(request(lab, "/qvd/list_of_vm", bearer(token)), b"password changed")
        refused(request(lab, "/qvd/list_of_vm", bearer(token)), b"unknown or already used")
    fresh = _mint(lab, basic("alice", "a-new-password"))
    assert request(lab, "/qvd/list_of_vm", bearer(fresh)).status == 200
