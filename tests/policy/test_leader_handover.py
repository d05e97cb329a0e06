"""Leader election with two real policy runners (two processes) on one database:
exactly one leads; when the leader's process is killed, the database frees its lock
and the other takes over within seconds; a scheduled occurrence the first one ran is
not run again by the second."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.policy.leader import LOCK_KEY
from tests.api.conftest import World
from tests.conftest import end_process
from tests.policy.conftest import add_policy, runtime, set_runtime

ROOT = Path(__file__).resolve().parents[2]
TICK = 0.3


def _start_runner(db: DatabaseTarget, name: str, stack: ExitStack) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.policy.runner_proc"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    stack.callback(proc.stdout.close)
    stack.callback(proc.stdin.close)
    stack.callback(end_process, proc)
    # the parameters go on stdin (never argv); the application name tells who holds the lock
    proc.stdin.write(json.dumps({"params": {**db.params, "application_name": name},
                                 "tick": TICK}) + "\n")  # fmt: skip
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def runners(db: DatabaseTarget) -> Iterator[dict[str, subprocess.Popen[str]]]:
    with ExitStack() as stack:
        yield {name: _start_runner(db, name, stack) for name in ("policy-a", "policy-b")}


def _leaders(engine: Engine) -> list[str]:
    """The application names of the sessions holding the leader's lock."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                "  ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.classid = :k1"
                "  AND l.objid = :k2 AND l.objsubid = 2 AND l.granted"
            ),
            {"k1": LOCK_KEY[0], "k2": LOCK_KEY[1]},
        )
        return [r[0] for r in rows]


def _wait(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_one_leads_and_the_other_takes_over_when_it_dies(
    db: DatabaseTarget,
    engine: Engine,
    fleet: World,
    runners: dict[str, subprocess.Popen[str]],
) -> None:
    vm_a = fleet.vms["A"]
    # a scheduled start whose occurrence (a minute ago, every day) is due now
    now = dt.datetime.now(dt.UTC)
    occurrence = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    pid = add_policy(engine, fleet.tenants["A"], kind="scheduled_start",
                     at_minute=occurrence.hour * 60 + occurrence.minute,
                     creation_date=occurrence - dt.timedelta(days=1))  # fmt: skip

    leaders = _wait(lambda: _leaders(engine))
    assert len(leaders) == 1, leaders
    first = leaders[0]
    # the leader ran the occurrence: the start asked, the occurrence claimed
    assert _wait(lambda: runtime(engine, vm_a).vm_cmd == "start")
    with engine.connect() as conn:
        ran = conn.execute(text("SELECT last_run_at FROM policies WHERE id = :i"), {"i": pid})
        assert ran.scalar_one() == occurrence
    # exactly one leads, tick after tick
    for _ in range(5):
        assert _leaders(engine) == [first]
        time.sleep(TICK)

    # the VM's start is taken back (as if it had been stopped); now the leader dies
    set_runtime(engine, vm_a, vm_cmd=None, host_id=None)
    # an idle desktop of tenant B: proof that the new leader acts
    idle_since = now - dt.timedelta(hours=3)
    set_runtime(engine, fleet.vms["B"], vm_state="running", host_id=fleet.host,
                vm_state_ts=idle_since, user_state_ts=idle_since)  # fmt: skip
    killed = runners[first]
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    died = time.monotonic()
    other = next(n for n in runners if n != first)
    assert _wait(lambda: _leaders(engine) == [other], timeout=15)
    took_over = time.monotonic() - died
    assert took_over < 10, took_over
    add_policy(engine, fleet.tenants["B"], kind="idle_stop", minutes=60)
    assert _wait(lambda: runtime(engine, fleet.vms["B"]).vm_cmd == "stop")
    # the scheduled occurrence the dead leader ran is not run again
    time.sleep(5 * TICK)
    assert runtime(engine, vm_a).vm_cmd is None
