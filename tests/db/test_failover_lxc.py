"""The headline failover: a real LXC desktop on a real node (HKD, VMA, watchdog) whose
database is two PostgreSQL clusters in synchronous streaming replication behind one
two-host target. The primary crashes and the standby is promoted: the desktop keeps
running with the same PID and its VMA answers, the node never fences and heartbeats
on the new primary, and a stop and a start asked after the failover are each carried
out once. Run under the heavy lock."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import make_engine
from qvd.hkd.daemon import Hkd
from qvd.hkd.lease import boot_clock
from tests.hkd.conftest import (
    command,
    lxc_node,
    lxc_storage,
    run_dir,
    runtime,
    state_of,
    test_image,
    wait_for,
)
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.pgcluster import ReplicatedPair, replicated_pair
from tests.security.desktops import node_hkd, vma_answers

__all__ = ["lxc_node", "lxc_storage", "run_dir", "test_image"]

pytestmark = [pytest.mark.timeout(900), pytest.mark.lxc]

# fence 8 s + kill 2 s + jitter < lost 11 s: longer than the failover, as in production
TIMINGS = {
    "internal.hkd.agent.ticker.timeout": "8",
    "internal.hkd.fence.kill_time": "2",
    "internal.hkd.cluster.node.timeout": "11",
}


@pytest.fixture
def pair() -> Iterator[ReplicatedPair]:
    with replicated_pair(f"qvd-test-ha-lxc-{os.getpid()}-") as made:
        yield made


@pytest.fixture
def lxc_hkd(pair: ReplicatedPair, lxc_node: LxcNode) -> Iterator[tuple[Hkd, Engine]]:
    engine = make_engine(pair.target())
    try:
        with node_hkd(pair.target(), engine, lxc_node, **TIMINGS) as hkd:
            yield hkd, engine
    finally:
        engine.dispose()


def _run_attempts(engine: Engine, vm_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT run_attempts FROM vm_counters WHERE vm_id = :v"), {"v": vm_id}
            ).scalar_one()
        )


def test_a_running_desktop_survives_a_failover(
    pair: ReplicatedPair, lxc_hkd: tuple[Hkd, Engine], lxc_node: LxcNode, test_image: Path
) -> None:
    hkd, engine = lxc_hkd
    assert hkd.host is not None
    desk, _ = add_lxc_vm(engine, lxc_node, test_image, 1)
    later, _ = add_lxc_vm(engine, lxc_node, test_image, 2)
    command(engine, desk, "start", hkd.host.id)
    wait_for(lambda: state_of(engine, desk) == "running", 90, "the desktop running")
    pid = runtime(engine, desk)["vm_pid"]
    assert isinstance(pid, int)

    crashed_at = boot_clock()
    started = time.monotonic()
    pair.fail_over("immediate")
    deadline = time.monotonic() + 30
    while hkd.fence_clock.deadline - hkd.settings.ticker_timeout <= crashed_at:
        assert Path(f"/proc/{pid}").exists(), "the desktop died in the failover"
        assert time.monotonic() < deadline, "no heartbeat on the new primary"
        time.sleep(0.05)
    print(f"heartbeat on the new primary {time.monotonic() - started:.2f} s after the crash")

    assert hkd.fencer.fence_count == 0
    assert Path(f"/proc/{pid}").exists()
    assert runtime(engine, desk)["vm_pid"] == pid
    assert state_of(engine, desk) == "running"
    wait_for(lambda: vma_answers(hkd, engine, desk), 30, "the desktop's VMA")

    # commands after the failover: found through the new LISTEN, each run once
    command(engine, later, "start", hkd.host.id)
    command(engine, desk, "stop")
    wait_for(lambda: state_of(engine, later) == "running", 90, "the second desktop running")
    wait_for(lambda: state_of(engine, desk) == "stopped", 60, "the first desktop stopped")
    assert not Path(f"/proc/{pid}").exists()
    assert _run_attempts(engine, later) == 1
    assert _run_attempts(engine, desk) == 1
    assert hkd.fencer.fence_count == 0
