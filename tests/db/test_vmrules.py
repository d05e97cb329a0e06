"""The VM start/stop rules (``qvd.db.vmrules``): the decision for every state and
command, and the conditional SQL against a real PostgreSQL, which must write exactly
when the decision says so."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from qvd.db import vmrules
from qvd.db.loadbalancer import NoHostAvailable, Weights
from qvd.db.models import VM_CMDS, VM_STATES
from qvd.db.vmrules import StartDecision as Start
from qvd.db.vmrules import StopDecision as Stop
from qvd.db.vmrules import VmSnapshot
from tests.api.conftest import add_running_host

NO_JITTER = Weights(ram=1, cpu=1, random=0)
COMMANDS: tuple[str | None, ...] = (None, *VM_CMDS)

START: dict[tuple[str, str | None], Start] = {
    ("stopped", None): Start.REQUEST,
    ("stopped", "start"): Start.PENDING,
    ("stopped", "stop"): Start.REQUEST,  # a stale stop on a stopped VM is replaced
    ("stopped", "busy"): Start.REQUEST,
    **{(s, c): Start.UNDERWAY for s in ("starting", "running") for c in (None, "start", "busy")},
    **{(s, "stop"): Start.STOPPING for s in ("starting", "running")},
    **{("stopping", c): Start.STOPPING for c in COMMANDS},
    **{(s, "stop"): Start.STOPPING for s in ("zombie", "debugging")},
    **{(s, c): Start.REFUSED for s in ("zombie", "debugging") for c in (None, "start", "busy")},
}

STOP: dict[tuple[str, str | None], Stop] = {
    ("stopped", "start"): Stop.CANCEL_START,
    **{(s, "stop"): Stop.PENDING for s in VM_STATES},
    **{("stopped", c): Stop.STOPPED for c in (None, "busy")},
    **{("stopping", c): Stop.STOPPING for c in (None, "start", "busy")},
    **{(s, c): Stop.REQUEST for s in vmrules.STOPPABLE for c in (None, "start", "busy")},
}

CASES = list(itertools.product(VM_STATES, COMMANDS))


def test_the_tables_cover_every_state_and_command() -> None:
    assert set(START) == set(STOP) == set(CASES)


@pytest.mark.parametrize(("state", "cmd"), CASES)
def test_decisions(state: str, cmd: str | None) -> None:
    vm = VmSnapshot(vm_state=state, vm_cmd=cmd, host_id=None)
    assert vmrules.decide_start(vm) is START[state, cmd]
    assert vmrules.decide_stop(vm) is STOP[state, cmd]


# ---- the SQL --------------------------------------------------------------------------------


def _vm(session: Session) -> tuple[int, int]:
    """(vm id, host id): a VM of a fresh tenant-1 user on a running host."""
    host = add_running_host(session, "node1")
    conn = session.connection()
    user = conn.execute(
        text("INSERT INTO users (tenant_id, login, password) VALUES (1, 'u', 'x') RETURNING id")
    ).scalar_one()
    osf = conn.execute(
        text("INSERT INTO osfs (tenant_id, name, memory) VALUES (1, 'o', 128) RETURNING id")
    ).scalar_one()
    vm = conn.execute(
        text("INSERT INTO vms (name, user_id, osf_id) VALUES ('v', :u, :o) RETURNING id"),
        {"u": user, "o": osf},
    ).scalar_one()
    return int(vm), host


def _set(session: Session, vm: int, state: str, cmd: str | None, host: int | None) -> None:
    session.execute(
        text(
            "UPDATE vm_runtimes SET vm_state = :s, vm_cmd = :c, host_id = :h, "
            "       last_error = 'old' WHERE vm_id = :v"
        ),
        {"s": state, "c": cmd, "h": host, "v": vm},
    )


def _row(session: Session, vm: int) -> tuple[str, str | None, int | None, str | None]:
    row = session.execute(
        text("SELECT vm_state, vm_cmd, host_id, last_error FROM vm_runtimes WHERE vm_id = :v"),
        {"v": vm},
    ).one()
    return (row[0], row[1], row[2], row[3])


def test_each_statement_writes_exactly_when_its_decision_says_so(session: Session) -> None:
    vm, host = _vm(session)
    for state, cmd in CASES:
        for statement, decided in (
            (lambda: vmrules.request_start(session.connection(), vm, host),
             START[state, cmd] is Start.REQUEST),
            (lambda: vmrules.request_stop(session.connection(), vm),
             STOP[state, cmd] is Stop.REQUEST),
            (lambda: vmrules.cancel_start(session.connection(), vm),
             STOP[state, cmd] is Stop.CANCEL_START),
        ):  # fmt: skip
            _set(session, vm, state, cmd, host)
            assert statement() is decided, (state, cmd, statement)
            after = _row(session, vm)
            if not decided:
                assert after == (state, cmd, host, "old"), "a refused statement writes nothing"


def test_start_assigns_a_fresh_host_and_clears_the_last_error(session: Session) -> None:
    vm, host = _vm(session)
    gone = add_running_host(session, "gone1")
    _set(session, vm, "stopped", "stop", gone)
    session.execute(text("UPDATE host_runtimes SET blocked = true WHERE host_id = :h"), {"h": gone})
    outcome = vmrules.start(session, vm, NO_JITTER)
    assert (outcome.decision, outcome.host_id) == (Start.REQUEST, host)
    assert outcome.vm == VmSnapshot(vm_state="stopped", vm_cmd="stop", host_id=gone)
    assert _row(session, vm) == ("stopped", "start", host, None)
    again = vmrules.start(session, vm, NO_JITTER)
    assert (again.decision, again.host_id) == (Start.PENDING, None)
    assert _row(session, vm) == ("stopped", "start", host, None), "nothing written"


@pytest.mark.parametrize("state", ["starting", "running", "stopping", "zombie", "debugging"])
def test_start_writes_nothing_unless_it_requests(session: Session, state: str) -> None:
    vm, host = _vm(session)
    _set(session, vm, state, None, host)
    outcome = vmrules.start(session, vm, NO_JITTER)
    assert outcome.decision is START[state, None]
    assert outcome.host_id is None
    assert _row(session, vm) == (state, None, host, "old")


def test_start_without_a_host_raises_and_writes_nothing(session: Session) -> None:
    vm, _ = _vm(session)
    _set(session, vm, "stopped", None, None)
    session.execute(text("UPDATE host_runtimes SET blocked = true"))
    with pytest.raises(NoHostAvailable, match="no backend host is running"):
        vmrules.start(session, vm, NO_JITTER)
    assert _row(session, vm) == ("stopped", None, None, "old")


def test_an_unknown_vm_is_a_lookup_error(session: Session) -> None:
    with pytest.raises(LookupError):
        vmrules.start(session, 999999, NO_JITTER)
    with pytest.raises(LookupError):
        vmrules.stop(session.connection(), 999999)


@pytest.mark.parametrize(("state", "cmd"), CASES)
def test_stop_writes_what_its_decision_needs(session: Session, state: str, cmd: str | None) -> None:
    vm, host = _vm(session)
    _set(session, vm, state, cmd, host)
    decision, found = vmrules.stop(session.connection(), vm)
    assert decision is STOP[state, cmd]
    assert found == VmSnapshot(vm_state=state, vm_cmd=cmd, host_id=host)
    expected = {
        Stop.REQUEST: (state, "stop", host, "old"),
        Stop.CANCEL_START: (state, None, None, "old"),
    }.get(decision, (state, cmd, host, "old"))
    assert _row(session, vm) == expected


def _until_a_backend_waits_for_a_lock(engine: Engine) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the stop never waited for the row")


def test_the_row_lock_serialises_a_start_and_a_stop(engine: Engine) -> None:
    """A stop that comes while a start holds the row waits for it, then sees the start
    pending and takes it back (never a start written over a stop's decision)."""
    with Session(engine) as s, s.begin():
        vm, host = _vm(s)
        _set(s, vm, "stopped", None, None)
    outcomes: list[Stop] = []
    locked = threading.Event()

    def stopper() -> None:
        locked.wait(10)
        with engine.begin() as conn:
            outcomes.append(vmrules.stop(conn, vm)[0])

    thread = threading.Thread(target=stopper)
    thread.start()
    try:
        with Session(engine) as s, s.begin():
            vmrules.lock(s.connection(), vm)
            locked.set()
            _until_a_backend_waits_for_a_lock(engine)
            assert outcomes == []
            assert vmrules.start(s, vm, NO_JITTER).host_id == host
    finally:
        thread.join(10)
    assert outcomes == [Stop.CANCEL_START]
    with Session(engine) as s:
        assert _row(s, vm)[:3] == ("stopped", None, None)
