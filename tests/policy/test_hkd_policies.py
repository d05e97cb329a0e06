"""Policies run by real HKDs (two nodes in-process, the fake backend) on one database:
one HKD leads; a scheduled start and an idle stop go through the nodes' own claims
(the VM really starts and stops); when the leading HKD stops, the other leads and does
not run the same occurrence again."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd
from tests.hkd.conftest import FakeVma, add_host, add_vm, hkd_config, state_of, wait_for
from tests.hkd.conftest import run_dir as run_dir
from tests.hkd.conftest import started as started
from tests.policy.conftest import add_policy, runtime, set_runtime

_TICK = {"policy.tick.delay": "0.3"}


def _leading(hkds: list[Hkd]) -> list[Hkd]:
    return [h for h in hkds if h.policies is not None and h.policies.leadership.leading]


def test_hkds_elect_one_leader_that_starts_and_stops_desktops(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    vma = FakeVma()
    hkds = []
    for n, name in enumerate(("pnode1", "pnode2")):
        add_host(engine, name, f"10.231.0.{n + 2}")
        hkd = Hkd(hkd_config(run_dir, name, **_TICK), backend=FakeBackend(), vma=vma, target=db)
        hkd.start()
        started.append(hkd)
        hkds.append(hkd)
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)

    # a scheduled start due now (a minute ago, every day) in the VMs' tenant (1)
    now = dt.datetime.now(dt.UTC)
    occurrence = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    add_policy(engine, 1, kind="scheduled_start",
               at_minute=occurrence.hour * 60 + occurrence.minute,
               creation_date=occurrence - dt.timedelta(days=1))  # fmt: skip
    wait_for(lambda: len(_leading(hkds)) == 1, 15, "one leader")
    leader = _leading(hkds)[0]
    wait_for(lambda: state_of(engine, vm_id) == "running", 15, "the scheduled start")
    for _ in range(5):  # exactly one, tick after tick
        assert _leading(hkds) == [leader]
        wait_for(lambda: leader.policies is not None and leader.policies.ticks > 0, 5, "ticks")

    # idle for long (its user went away hours ago): the idle rule stops it through the node
    hours_ago = now - dt.timedelta(hours=3)
    set_runtime(engine, vm_id, vm_state_ts=hours_ago, user_state_ts=hours_ago)
    add_policy(engine, 1, kind="idle_stop", minutes=60)
    wait_for(lambda: state_of(engine, vm_id) == "stopped", 15, "the idle stop")

    # the leading node stops: the other leads, and the occurrence is not run again
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM policies WHERE kind = 'idle_stop'"))
    leader.stop()
    other = next(h for h in hkds if h is not leader)
    wait_for(lambda: _leading([other]) == [other], 15, "the hand-over")
    assert other.policies is not None
    ticks = other.policies.ticks
    wait_for(lambda: other.policies is not None and other.policies.ticks >= ticks + 3, 10, "ticks")
    rt = runtime(engine, vm_id)
    assert (rt.vm_state, rt.vm_cmd) == ("stopped", None)
