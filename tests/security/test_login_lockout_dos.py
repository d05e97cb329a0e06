"""Attack test: locking a user (or the superadmin) out by failing logins in their name.

On main the failed-login limit was checked before the password, per login name: fifty
wrong passwords from anywhere locked the real owner out for the whole window. Now the
failures back off per address and per user, and the user's backoff applies only to
addresses that have been failing. Against the real L7R (TLS, PostgreSQL) and the real
admin API (uvicorn, TLS): an attacker at 127.0.0.2 sends 50 wrong passwords for a user,
(and more, until its wait is long enough to check), then the owner at 127.0.0.3 logs in
at once; the attacker's address stays held back even with the right password.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from qvd.l7r.auth.chain import FailureLimiter
from tests.api.conftest import PASSWORD as ADMIN_PASSWORD
from tests.api.conftest import build_world
from tests.l7r.conftest import PASSWORD, Lab
from tests.l7r.conftest import lab as lab
from tests.l7r.ldap_fixture import basic
from tests.security.logins import admin_api, request

ATTACKER, OWNER, NEWCOMER = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def _wait_of(message: str) -> int:
    """The seconds a "too many failed logins: try again in N s" answer names (else 0)."""
    found = re.search(r"too many failed logins: try again in (\d+) s", message)
    return int(found.group(1)) if found else 0


def _hammer(send: Callable[[int], str]) -> list[str]:
    """At least 50 wrong passwords, then more (the waits double: 1, 2, 4 s) until an
    answer names a wait of 4 s or more, so that the checks right after it cannot
    outlast it on a slow machine."""
    answers = [send(i) for i in range(50)]
    deadline = time.monotonic() + 60
    while _wait_of(answers[-1]) < 4:
        assert time.monotonic() < deadline, answers[-3:]
        time.sleep(0.05)
        answers.append(send(len(answers)))
    return answers


def test_fifty_wrong_passwords_do_not_lock_the_owner_out_of_the_l7r(lab: Lab) -> None:
    def guess(i: int) -> str:
        reply = request(lab, "/qvd/list_of_vm", basic("alice", f"guess-{i}"), source=ATTACKER)
        assert reply.status == 401
        return reply.body.decode()

    answers = _hammer(guess)
    assert "wrong login or password" in answers[0]
    owner = request(lab, "/qvd/list_of_vm", basic("alice", PASSWORD), source=OWNER)
    assert owner.status == 200, owner
    assert b"alice-desk" in owner.body
    # the right password does not help the address that has been guessing
    guessed = request(lab, "/qvd/list_of_vm", basic("alice", PASSWORD), source=ATTACKER)
    assert guessed.status == 401
    assert b"too many failed logins" in guessed.body
    # a second address that starts failing for the attacked user waits the user's backoff
    wrong = request(lab, "/qvd/list_of_vm", basic("alice", "guess-x"), source=NEWCOMER)
    assert b"wrong login or password" in wrong.body
    held = request(lab, "/qvd/list_of_vm", basic("alice", PASSWORD), source=NEWCOMER)
    assert held.status == 401
    assert b"too many failed logins" in held.body


def test_strangers_cannot_lock_the_superadmin_out_of_the_api(
    tmp_path: Path, engine: Engine
) -> None:
    build_world(engine)
    with admin_api(tmp_path, engine) as api:

        def guess(i: int) -> str:
            r = api.act(
                "current_admin_setup", login="root", password=f"guess-{i}", tenant="*",
                source=ATTACKER,
            )  # fmt: skip
            assert r["status"] == 3200, r
            return str(r["message"])

        _hammer(guess)
        r = api.act(
            "current_admin_setup", login="root", password=ADMIN_PASSWORD, tenant="*",
            source=OWNER,
        )  # fmt: skip
        assert r["status"] == 0, r
        assert r["sid"]
        r = api.act(
            "current_admin_setup", login="root", password=ADMIN_PASSWORD, tenant="*",
            source=ATTACKER,
        )  # fmt: skip
        assert r["status"] == 3200
        assert "too many failed logins" in r["message"]


def test_the_l7r_and_the_api_share_the_limiter() -> None:
    from qvd.api.actions.auth import LoginLimiter

    assert issubclass(LoginLimiter, FailureLimiter)
