"""Bearer tokens through the real L7R: ``/qvd/create_auth_token`` hands out a multi-use
token that then logs in as ``Authorization: Bearer base64(token)`` for listing,
``/qvd/authenticate_user`` and ``/qvd/stop_vm`` (the test plays the HKD)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time

from sqlalchemy import text

from qvd.l7r.auth import issue_token
from tests.l7r.conftest import PASSWORD, Lab
from tests.l7r.ldap_fixture import add_vm, basic, bearer, get


def create_token(lab: Lab) -> tuple[str, int]:
    reply = get(lab, "/qvd/create_auth_token", basic("alice", PASSWORD))
    assert reply.status == 200, reply
    assert reply.header("Content-Type") == "application/json"
    answer = json.loads(reply.body)
    assert set(answer) == {"auth_params_id", "auth_token"}
    return str(answer["auth_token"]), int(answer["auth_params_id"])


def play_hkd_stop(lab: Lab, vm_id: int, seen: list[str]) -> threading.Thread:
    """Wait for ``vm_cmd = 'stop'`` on the VM, then report it stopped, as the HKD does."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lab.engine.begin() as conn:
                cmd = conn.execute(
                    text("SELECT vm_cmd FROM vm_runtimes WHERE vm_id = :v"), {"v": vm_id}
                ).scalar()
                if cmd == "stop":
                    seen.append(cmd)
                    conn.execute(
                        text(
                            "UPDATE vm_runtimes SET vm_state = 'stopped', vm_cmd = NULL, "
                            "vm_address = NULL, host_id = NULL WHERE vm_id = :v"
                        ),
                        {"v": vm_id},
                    )
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_create_auth_token_gives_a_multi_use_bearer(lab: Lab) -> None:
    token, params_id = create_token(lab)
    with lab.engine.begin() as conn:
        row = conn.execute(
            text(
                "SELECT user_id, vm_id, multi_use, auth_params_id, expiration FROM user_tokens "
                "WHERE token_sha256 = :d"
            ),
            {"d": hashlib.sha256(token.encode()).hexdigest()},
        ).one()
        params = conn.execute(
            text("SELECT parameters FROM user_auth_parameters WHERE id = :i"), {"i": params_id}
        ).scalar_one()
    assert tuple(row[:4]) == (lab.seed.user_id, None, True, params_id)
    left = row[4] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23, minutes=59) < left <= dt.timedelta(hours=24)
    assert params == {"qvd.vm.user.name": "alice"}
    for header in [bearer(token)] * 3 + [f"Bearer {token}"]:  # base64 as clients send, or raw
        reply = get(lab, "/qvd/list_of_vm", header)
        assert reply.status == 200, reply
        assert [vm["id"] for vm in json.loads(reply.body)] == [lab.seed.vm_id]

    plain = get(lab, "/qvd/authenticate_user", bearer(token))
    assert (plain.status, json.loads(plain.body)) == (200, {})
    stored = get(lab, "/qvd/authenticate_user?store_auth=1", bearer(token))
    assert stored.status == 200, stored
    new_id = json.loads(stored.body)["auth_params_id"]
    assert new_id != params_id
    with lab.engine.begin() as conn:
        again = conn.execute(
            text("SELECT parameters FROM user_auth_parameters WHERE id = :i"), {"i": new_id}
        ).scalar_one()
    assert again == {"qvd.vm.user.name": "alice"}


def test_stop_vm_with_a_bearer_token(lab: Lab) -> None:
    token, _ = create_token(lab)
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    seen: list[str] = []
    hkd = play_hkd_stop(lab, vm, seen)
    reply = get(lab, f"/qvd/stop_vm?id={vm}", bearer(token))
    hkd.join(10)
    assert seen == ["stop"], "the L7R asked the HKD to stop the VM"
    assert (reply.status, reply.body, reply.infos) == (
        200,
        b"Machine stopped",
        (b"Stopping virtual machine",),
    )
    assert reply.header("Content-Type") == "text/plain"
    # already stopped: done at once; other people's VMs, no id, an unstoppable state: refused
    again = get(lab, f"/qvd/stop_vm?id={vm}", bearer(token))
    assert (again.status, again.body, again.infos) == (200, b"Machine stopped", ())
    assert get(lab, f"/qvd/stop_vm?id={lab.seed.other_vm}", bearer(token)).status == 404
    assert get(lab, "/qvd/stop_vm", bearer(token)).status == 422
    with lab.engine.begin() as conn:
        conn.execute(
            text("UPDATE vm_runtimes SET vm_state = 'stopping' WHERE vm_id = :v"), {"v": vm}
        )
    busy = get(lab, f"/qvd/stop_vm?id={vm}", bearer(token))
    assert busy.status == 503
    assert b"cannot be stopped now" in busy.body


def test_token_bound_to_a_vm(lab: Lab) -> None:
    with lab.engine.begin() as conn:
        osf = conn.execute(
            text("SELECT osf_id FROM vms WHERE id = :v"), {"v": lab.seed.vm_id}
        ).scalar_one()
    second = add_vm(lab.engine, lab.seed.user_id, osf, "alice-second")
    with lab.engine.begin() as conn:
        token = issue_token(conn, lab.seed.user_id, multi_use=True, vm_id=lab.seed.vm_id)
    refused = get(lab, f"/qvd/stop_vm?id={second}", bearer(token))
    assert refused.status == 403
    assert b"vm_id does not match with provided token" in refused.body
    assert get(lab, f"/qvd/stop_vm?id={lab.seed.vm_id}", bearer(token)).status == 200


def test_unknown_expired_and_blocked_tokens_get_401(lab: Lab) -> None:
    with lab.engine.begin() as conn:
        expired = issue_token(
            conn, lab.seed.user_id, multi_use=True, lifetime=dt.timedelta(seconds=-1)
        )
        bob = conn.execute(text("SELECT id FROM users WHERE login = 'bob'")).scalar_one()
        blocked = issue_token(conn, bob, multi_use=True)
        conn.execute(text("UPDATE users SET blocked = true WHERE id = :u"), {"u": bob})
    for token, reason in (
        ("no-such-token", b"unknown or already used token"),
        (expired, b"the token has expired"),
        (blocked, b"blocked"),
    ):
        reply = get(lab, "/qvd/list_of_vm", bearer(token))
        assert reply.status == 401, reply
        assert reply.header("WWW-Authenticate") == 'Basic realm="QVD"'
        assert reason in reply.body
    with lab.engine.begin() as conn:
        left = conn.execute(text("SELECT count(*) FROM user_tokens")).scalar()
    assert left == 1, "the expired token was deleted, the blocked user's kept"
