"""The session history as the real L7R writes it (tests/l7r/conftest.py: a real
PostgreSQL, the real VMA RPC server, an nxagent stand-in): logins ok and failed, a
connect with its disconnect, duration and bytes, a takeover, rows a dead node left
open (closed ``node_lost`` by the HKD's peer check and by the recorder at start)."""

from __future__ import annotations

import base64
import datetime as dt
import time
from typing import Any

from sqlalchemy import text

from qvd.hkd import store as hkd_store
from qvd.l7r.history import HistoryRecorder
from tests.l7r.conftest import Lab
from tests.l7r.test_server import final_response, read_response, settled_session, swap_ids
from tests.l7r.test_wire import A2, B1, GREETING


def rows(lab: Lab, where: str = "true", **params: Any) -> list[dict[str, Any]]:
    """The history rows (oldest first) once every queued write is done."""
    assert lab.server.history is not None
    assert lab.server.history.flush(10)
    with lab.engine.begin() as conn:
        found = conn.execute(
            text(f"SELECT * FROM session_history WHERE {where} ORDER BY id"), params
        ).mappings()
        return [dict(r) for r in found]


def wait_rows(lab: Lab, where: str, count: int, **params: Any) -> list[dict[str, Any]]:
    """The rows matching ``where`` once there are ``count`` of them (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        found = rows(lab, where, **params)
        if len(found) >= count or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def get(lab: Lab, request: bytes) -> bytes:
    with lab.connect() as s:
        s.sendall(request)
        head, _ = read_response(s, bytearray())
    return head


def test_logins_ok_and_failed_are_recorded(lab: Lab) -> None:
    assert get(lab, B1).startswith(b"HTTP/1.1 200")
    wrong = "Basic " + base64.b64encode(b"alice:not-her-password").decode()
    assert get(lab, B1.replace(b"Basic YWxpY2U6c2VjcmV0", wrong.encode())).startswith(
        b"HTTP/1.1 401"
    )
    nobody = "Basic " + base64.b64encode(b"nobody@nowhere:x").decode()
    assert get(lab, B1.replace(b"Basic YWxpY2U6c2VjcmV0", nobody.encode())).startswith(
        b"HTTP/1.1 401"
    )
    ok, failed, unknown = rows(lab, "kind = 'login'")
    assert (ok["result"], ok["login"], ok["user_id"], ok["tenant_id"]) == (
        "ok", "alice", lab.seed.user_id, 1,
    )  # fmt: skip
    assert ok["client_address"] == "127.0.0.1"
    assert ok["client_info"] == "QVD::HTTPC/0.01 (linux)"
    assert (ok["host_id"], ok["host_name"], ok["transport"]) == (lab.seed.host_id, "node1", "nx")
    assert ok["ended_at"] is not None  # a login is a moment, not an open session
    # a failed login names the user and tenant it claimed (resolved when they exist)
    assert (failed["result"], failed["login"], failed["tenant_id"]) == ("unauthorized", "alice", 1)
    assert failed["user_id"] == lab.seed.user_id
    assert failed["detail"] == "wrong login or password"
    assert (unknown["result"], unknown["login"], unknown["tenant_id"]) == (
        "unauthorized", "nobody", None,
    )  # fmt: skip
    assert unknown["detail"] == "unknown tenant 'nowhere'"


def test_connect_and_disconnect_with_duration_and_bytes(lab: Lab) -> None:
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A2, vm))
        head, _, _ = final_response(s, buf)
        assert head.startswith(b"HTTP/1.1 101")
        s.sendall(GREETING)
        banner = s.recv(100)
        assert banner.startswith(b"NXPROXY")
        s.sendall(b"ECHO-" + b"x" * 5000)
        echoed = b""
        while len(echoed) < 5005:
            echoed += s.recv(65536)
        time.sleep(0.3)  # the row is open while the relay runs
        (open_row,) = rows(lab, "kind IN ('connect', 'takeover')")
        assert open_row["ended_at"] is None
        assert open_row["end_reason"] is None
    assert settled_session(lab, vm) == ("disconnected", None)
    (row,) = wait_rows(lab, "kind = 'connect' AND ended_at IS NOT NULL", 1)
    assert (row["result"], row["end_reason"], row["transport"]) == ("ok", "disconnect", "nx")
    assert (row["vm_id"], row["vm_name"], row["login"]) == (vm, "alice-desk", "alice")
    assert (row["host_id"], row["host_name"], row["tenant_id"]) == (lab.seed.host_id, "node1", 1)
    assert row["client_info"] == "os=linux"  # the original client's qvd.client.* parameters
    assert row["ended_at"] >= row["started_at"]
    assert row["bytes_in"] >= len(GREETING) + 5005
    assert row["bytes_out"] >= len(banner) + 5005
    logins = rows(lab, "kind = 'login'")
    assert [r["result"] for r in logins] == ["ok"]


def test_a_failed_connect_is_a_row_with_its_reason(lab: Lab) -> None:
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    lab.agent.fail = True
    with lab.connect() as s:
        s.sendall(swap_ids(A2, vm))
        head, _, _ = final_response(s, bytearray())
    assert head.startswith(b"HTTP/1.1 503")
    (row,) = wait_rows(lab, "kind = 'connect'", 1)
    assert (row["result"], row["end_reason"]) == ("unavailable", "error")
    assert "provisioning failed: no space left" in row["detail"]
    assert row["ended_at"] is not None
    assert row["bytes_in"] is None


def test_takeover_two_rows_the_first_ended_taken_over(lab: Lab) -> None:
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    first = lab.connect()
    first.sendall(swap_ids(A2, vm))
    head, _, _ = final_response(first, bytearray())
    assert head.startswith(b"HTTP/1.1 101")
    first.sendall(GREETING)
    first.recv(100)
    with lab.connect() as second:
        second.sendall(swap_ids(A2, vm).replace(b"qvd.client.os=linux", b"qvd.client.os=windows"))
        head, _, _ = final_response(second, bytearray())
        assert head.startswith(b"HTTP/1.1 101"), head
        first.settimeout(5)
        assert first.recv(100) == b""
        first.close()
        taken, took = wait_rows(lab, "kind IN ('connect', 'takeover')", 2)
        assert (taken["kind"], took["kind"]) == ("connect", "takeover")
        deadline = time.monotonic() + 10
        while taken["ended_at"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
            taken = rows(lab, "id = :i", i=taken["id"])[0]
        assert taken["end_reason"] == "taken_over"
        assert took["ended_at"] is None
        assert took["client_info"] == "os=windows"
    assert settled_session(lab, vm) == ("disconnected", None)
    (took,) = wait_rows(lab, "kind = 'takeover' AND ended_at IS NOT NULL", 1)
    assert took["end_reason"] == "disconnect"


def _open_row(lab: Lab, host_id: int) -> int:
    with lab.engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO session_history (kind, result, login, tenant_id, host_id,"
                    " vm_id, started_at) VALUES ('connect', 'ok', 'alice', 1, :h, :v,"
                    " now() - interval '1 hour') RETURNING id"
                ),
                {"h": host_id, "v": lab.seed.vm_id},
            ).scalar_one()
        )


def test_the_hkd_closes_a_lost_nodes_open_rows_node_lost(lab: Lab) -> None:
    with lab.engine.begin() as conn:
        dead = conn.execute(
            text("INSERT INTO hosts (name, address) VALUES ('node2', '127.0.0.2') RETURNING id")
        ).scalar_one()
        conn.execute(
            text(
                "UPDATE host_runtimes SET state = 'running', "
                "ok_ts = now() - interval '10 minutes' WHERE host_id = :h"
            ),
            {"h": dead},
        )
    row_id = _open_row(lab, dead)
    mine = _open_row(lab, lab.seed.host_id)  # a live node's row stays open
    with lab.engine.begin() as conn:
        # silent for more than 0.5 s (and the database up for longer than that)
        assert hkd_store.mark_lost_peers(conn, lab.seed.host_id, 0.5) == [dead]
    (closed,) = rows(lab, "id = :i", i=row_id)
    assert closed["end_reason"] == "node_lost"
    assert closed["ended_at"] is not None
    # ended when the node was last heard of, not when it was found lost
    assert closed["ended_at"] < closed["started_at"] + dt.timedelta(minutes=55)
    assert rows(lab, "id = :i", i=mine)[0]["ended_at"] is None


def test_the_recorder_closes_its_own_nodes_rows_at_start(lab: Lab) -> None:
    row_id = _open_row(lab, lab.seed.host_id)
    recorder = HistoryRecorder(lab.engine, lab.seed.host_id)
    recorder.start()
    try:
        assert recorder.flush(10)
    finally:
        recorder.stop()
    (closed,) = rows(lab, "id = :i", i=row_id)
    assert closed["end_reason"] == "node_lost"


def test_a_database_error_drops_the_record_never_the_login(lab: Lab) -> None:
    with lab.engine.begin() as conn:
        conn.execute(text("ALTER TABLE session_history RENAME TO session_history_away"))
    try:
        assert get(lab, B1).startswith(b"HTTP/1.1 200")
        assert lab.server.history is not None
        assert lab.server.history.flush(10)
        assert lab.server.history.dropped >= 1
    finally:
        with lab.engine.begin() as conn:
            conn.execute(text("ALTER TABLE session_history_away RENAME TO session_history"))
    assert get(lab, B1).startswith(b"HTTP/1.1 200")
    assert [r["result"] for r in rows(lab, "kind = 'login'")] == ["ok"]
