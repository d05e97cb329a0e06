"""The scheduled-start and idle-stop policies with short times on a REAL node (in-process
HKD, real LXC containers, real PostgreSQL; under the heavy lock).

Time is injected: the policy leader here is a ``PolicyRunner`` of the test (the node's
own is off, ``policy.enable = 0``) whose clock the test moves forward, so "at 08:00"
and "idle for a minute" come in seconds. Everything else is the real path: the leader
writes ``vm_cmd`` rows through ``vmrules``, the node's HKD claims them on their NOTIFY
and starts or stops the container."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.config import Config
from qvd.db import DatabaseTarget
from qvd.hkd.daemon import Hkd
from qvd.policy.runner import PolicyRunner
from tests.hkd.conftest import lxc_node as lxc_node
from tests.hkd.conftest import lxc_storage as lxc_storage
from tests.hkd.conftest import run_dir as run_dir
from tests.hkd.conftest import state_of, wait_for
from tests.hkd.conftest import test_image as test_image
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.policy.conftest import add_policy, runtime, set_runtime
from tests.security.desktops import node_hkd


@pytest.fixture
def lxc_hkd(db: DatabaseTarget, engine: Engine, lxc_node: LxcNode) -> Iterator[Hkd]:
    with node_hkd(db, engine, lxc_node, **{"policy.enable": "0"}) as hkd:
        yield hkd


class ShiftedClock:
    """The real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


def test_scheduled_start_then_idle_stop_on_a_real_node(
    lxc_hkd: Hkd, lxc_node: LxcNode, db: DatabaseTarget, engine: Engine, test_image: Path
) -> None:
    vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1)
    tenant = 1
    clock = ShiftedClock()
    now = clock()
    # a working day's start, ten minutes from now (every day, UTC)
    at = (now + dt.timedelta(minutes=10)).replace(second=0, microsecond=0)
    add_policy(engine, tenant, kind="scheduled_start", at_minute=at.hour * 60 + at.minute,
               creation_date=now)  # fmt: skip
    add_policy(engine, tenant, kind="idle_stop", minutes=1)
    config = Config().with_overrides({"policy.tick.delay": "0.2"}, source="test")
    stop = threading.Event()
    leader = PolicyRunner(engine, db, lambda: config, stop=stop, clock=clock)
    thread = threading.Thread(target=leader.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: leader.leadership.leading and leader.ticks >= 3, 15, "leading")
        assert state_of(engine, vm_id) == "stopped"  # not yet 08:00
        assert runtime(engine, vm_id).vm_cmd is None

        clock.offset = at - now + dt.timedelta(seconds=5)  # the start's minute has come
        wait_for(lambda: state_of(engine, vm_id) == "running", 120, "the scheduled start")
        with engine.connect() as conn:
            ran = conn.execute(text("SELECT last_run_at FROM policies WHERE kind = :k"),
                               {"k": "scheduled_start"}).scalar_one()  # fmt: skip
        assert ran == at

        # its user connected: an hour later it still runs (idle rules spare it)
        set_runtime(engine, vm_id, user_state="connected", user_state_ts=clock())
        ticks = leader.ticks
        clock.offset += dt.timedelta(hours=1)
        wait_for(lambda: leader.ticks >= ticks + 5, 15, "ticks")
        assert (state_of(engine, vm_id), runtime(engine, vm_id).vm_cmd) == ("running", None)

        # the user goes away; a minute later (of the policy's clock) the desktop stops
        set_runtime(engine, vm_id, user_state="disconnected", user_state_ts=clock())
        ticks = leader.ticks
        wait_for(lambda: leader.ticks >= ticks + 5, 15, "ticks")
        assert state_of(engine, vm_id) == "running"  # not idle long enough yet
        clock.offset += dt.timedelta(seconds=61)
        wait_for(lambda: state_of(engine, vm_id) == "stopped", 120, "the idle stop")
        # and the morning's start is not run again for the same occurrence
        ticks = leader.ticks
        wait_for(lambda: leader.ticks >= ticks + 5, 15, "ticks")
        assert (state_of(engine, vm_id), runtime(engine, vm_id).vm_cmd) == ("stopped", None)
    finally:
        stop.set()
        thread.join(10)
