"""The leader's ticks on a real database: each kind acts through the usual requests for
change (``vm_cmd`` by ``vmrules``, ``user_cmd = abort``) and their NOTIFY; a scheduled
occurrence runs once; a leader whose lock session is gone acts no more; the warm
pool ranks from ``session_history``."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from qvd.config import Config
from qvd.db import DatabaseTarget, Listener
from qvd.db.channels import user_cmd_channel, vm_cmd_channel
from qvd.db.loadbalancer import Weights
from qvd.db.models import Policy, SessionHistory
from qvd.policy import store
from qvd.policy.decide import Action, Verb
from qvd.policy.leader import Leadership
from qvd.policy.runner import PolicyRunner
from tests.api.conftest import World
from tests.policy.conftest import add_policy, runtime, set_runtime

CONFIG = Config()
LONG_AGO = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)


def _runner(engine: Engine, target: DatabaseTarget, now: dt.datetime | None = None) -> PolicyRunner:
    clock = (lambda: now) if now is not None else (lambda: dt.datetime.now(dt.UTC))
    return PolicyRunner(engine, target, lambda: CONFIG, stop=threading.Event(), clock=clock)


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _running_idle(engine: Engine, vm_id: int, host: int) -> None:
    set_runtime(engine, vm_id, vm_state="running", host_id=host, vm_state_ts=LONG_AGO,
                user_state="disconnected", user_state_ts=LONG_AGO)  # fmt: skip


def test_idle_stop_asks_the_node_with_its_notify(
    db: DatabaseTarget, engine: Engine, fleet: World
) -> None:
    vm_a, vm_b = fleet.vms["A"], fleet.vms["B"]
    for vm in (vm_a, vm_b):
        _running_idle(engine, vm, fleet.host)
    add_policy(engine, fleet.tenants["A"], kind="idle_stop", minutes=60)
    runner = _runner(engine, db)
    with Listener(db) as listener:
        listener.listen(vm_cmd_channel(fleet.host))
        report = runner.step()
        assert report is not None
        assert report.done == 1
        notes = listener.wait(10)
    assert runtime(engine, vm_a).vm_cmd == "stop"
    assert runtime(engine, vm_b).vm_cmd is None  # tenant B has no policy
    assert notes
    # level-triggered: the next pass finds nothing left to do
    again = runner.step()
    assert again is not None
    assert again.done == 0
    runner.leadership.release()


def test_idle_stop_spares_connected_blocked_and_fresh_desktops(
    db: DatabaseTarget, engine: Engine, fleet: World
) -> None:
    vm = fleet.vms["A"]
    add_policy(engine, fleet.tenants["A"], kind="idle_stop", minutes=60)
    runner = _runner(engine, db)
    for change in ({"user_state": "connected"}, {"blocked": True},
                   {"vm_state_ts": dt.datetime.now(dt.UTC)}):  # fmt: skip
        _running_idle(engine, vm, fleet.host)
        set_runtime(engine, vm, **change)
        runner.step()
        assert runtime(engine, vm).vm_cmd is None, change
        set_runtime(engine, vm, blocked=False)
    runner.leadership.release()


def test_max_session_and_idle_suspend_abort_the_holding_l7r(
    db: DatabaseTarget, engine: Engine, fleet: World
) -> None:
    vm = fleet.vms["A"]
    set_runtime(engine, vm, vm_state="running", host_id=fleet.host, vm_state_ts=LONG_AGO,
                user_state="connected", user_state_ts=LONG_AGO, l7r_host_id=fleet.host)  # fmt: skip
    add_policy(engine, fleet.tenants["A"], kind="max_session", minutes=60)
    runner = _runner(engine, db)
    with Listener(db) as listener:
        listener.listen(user_cmd_channel(fleet.host))
        runner.step()
        assert listener.wait(10)
    assert runtime(engine, vm).user_cmd == "abort"
    # idle_suspend: a disconnected desktop an L7R still holds
    set_runtime(engine, vm, user_cmd=None, user_state="disconnected")
    with Session(engine) as s, s.begin():
        s.execute(text("DELETE FROM policies"))
    add_policy(engine, fleet.tenants["A"], kind="idle_suspend", minutes=60)
    runner.step()
    rt = runtime(engine, vm)
    assert (rt.user_cmd, rt.vm_cmd, rt.vm_state) == ("abort", None, "running")
    runner.leadership.release()


def test_a_scheduled_start_runs_once_per_occurrence(
    db: DatabaseTarget, engine: Engine, fleet: World
) -> None:
    vm = fleet.vms["A"]
    now = dt.datetime(2026, 12, 7, 8, 5, tzinfo=dt.UTC)  # a Monday
    pid = add_policy(engine, fleet.tenants["A"], kind="scheduled_start", at_minute=8 * 60,
                     weekdays=1, creation_date=now - dt.timedelta(days=3))  # fmt: skip
    first = _runner(engine, db, now)
    report = first.step()
    assert report is not None
    assert report.done == 1
    rt = runtime(engine, vm)
    assert (rt.vm_cmd, rt.host_id) == ("start", fleet.host)
    with Session(engine) as s:
        occurrence = s.get_one(Policy, pid).last_run_at
    assert occurrence == dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
    # the VM is stopped again (its start taken back): the same occurrence is not run again,
    # not by this leader, and not by the same actions given again (another leader's late copy)
    set_runtime(engine, vm, vm_cmd=None, host_id=None)
    first.step()
    assert runtime(engine, vm).vm_cmd is None
    late = [Action(verb=Verb.MARK_RUN, policy_id=pid, policy_name="p", occurrence=occurrence),
            Action(verb=Verb.START, policy_id=pid, policy_name="p", vm_id=vm,
                   occurrence=occurrence)]  # fmt: skip
    pid_of_leader = first.leadership.backend_pid
    assert pid_of_leader is not None
    again = store.apply(engine, late, Weights.from_config(CONFIG), pid_of_leader)
    assert (again.done, again.skipped) == (0, 2)
    assert runtime(engine, vm).vm_cmd is None
    first.leadership.release()


def test_a_leader_whose_session_is_gone_acts_no_more(
    db: DatabaseTarget, engine: Engine, fleet: World
) -> None:
    vm = fleet.vms["A"]
    _running_idle(engine, vm, fleet.host)
    add_policy(engine, fleet.tenants["A"], kind="idle_stop", minutes=60)
    leader = Leadership(db)
    assert leader.try_lead()
    backend = leader.backend_pid
    assert backend is not None
    with engine.begin() as conn:  # the leader's session dies (network, restart)
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend})
    stop = [Action(verb=Verb.STOP, policy_id=1, policy_name="p", vm_id=vm)]
    with pytest.raises(store.LeadershipLost):
        store.apply(engine, stop, Weights.from_config(CONFIG), backend)
    assert runtime(engine, vm).vm_cmd is None
    # its next try sees the connection failed: it no longer leads, and another can
    assert not leader.try_lead() or leader.backend_pid != backend
    other = Leadership(db)
    if leader.leading:
        leader.release()
    assert _eventually(other.try_lead)
    other.release()
    leader.release()


def test_one_leader_at_a_time(db: DatabaseTarget) -> None:
    first, second = Leadership(db), Leadership(db)
    assert first.try_lead()
    assert not second.try_lead()
    assert first.try_lead()  # confirms
    first.release()
    assert _eventually(second.try_lead)  # the server frees the lock as the session ends
    assert not first.try_lead()
    second.release()
    first.release()  # closes its connection too


def _history(engine: Engine, vm_id: int, user_id: int, when: list[dt.datetime]) -> None:
    with Session(engine) as s, s.begin():
        s.execute(insert(SessionHistory), [
            {"kind": "connect", "result": "ok", "login": "u", "user_id": user_id,
             "vm_id": vm_id, "started_at": t}
            for t in when
        ])  # fmt: skip


def test_warm_pool_starts_the_desktops_of_usual_users(
    db: DatabaseTarget, engine: Engine, fleet: World
) -> None:
    now = dt.datetime(2026, 12, 7, 8, 40, tzinfo=dt.UTC)  # Monday 09:40 in Madrid
    vm_a = fleet.vms["A"]
    weeks = [now - dt.timedelta(weeks=w) + dt.timedelta(minutes=10) for w in (1, 2, 3)]
    _history(engine, vm_a, fleet.users["A"], weeks)
    # tenant B's desktop is as usual, but the policy is tenant A's
    _history(engine, fleet.vms["B"], fleet.users["B"], weeks)
    pid = add_policy(engine, fleet.tenants["A"], kind="warm_pool", size=2, minutes=30,
                     timezone="Europe/Madrid")  # fmt: skip
    with engine.connect() as conn:
        with Session(engine) as s:
            policy = next(p for p in store.read_policies(conn) if p.id == pid)
            assert s.get_one(Policy, pid).size == 2
        found = store.read_warm(conn, policy, now, weeks=4, min_days=2)
        assert [(c.vm_id, c.days) for c in found] == [(vm_a, 3)]
        assert store.read_warm(conn, policy, now, weeks=4, min_days=4) == []
        later = now + dt.timedelta(hours=2)  # nobody usually connects then
        assert store.read_warm(conn, policy, later, weeks=4, min_days=1) == []
    runner = _runner(engine, db, now)
    runner.step()
    assert runtime(engine, vm_a).vm_cmd == "start"
    assert runtime(engine, fleet.vms["B"]).vm_cmd is None
    runner.leadership.release()
