"""Fencing and database outages with real desktops: real LXC containers from the test
image, the real VMA, the HKD's watchdog process, a PostgreSQL cluster of the test's own
that it freezes (this node cut off: the desktops die on time) or stops for a minute
(down for everyone: every desktop keeps running and answering)."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import EmbeddedCluster, make_engine, upgrade
from qvd.hkd.daemon import Hkd
from qvd.hkd.lease import boot_clock
from tests.conftest import throwaway_cluster
from tests.hkd.conftest import add_host, command, frozen, host_state, runtime, state_of, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm, leaks
from tests.security.desktops import vma_answers

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedCluster]:
    with throwaway_cluster("qvd-test-pg-fence-lxc-") as cluster:
        yield cluster


@pytest.fixture
def lxc_hkd(own_cluster: EmbeddedCluster, lxc_node: LxcNode) -> Iterator[tuple[Hkd, Engine]]:
    engine = make_engine(own_cluster.target())
    upgrade(engine)
    add_host(engine, lxc_node.name, lxc_node.host_address)
    hkd = Hkd(lxc_node.config(), target=own_cluster.target())
    hkd.start()
    try:
        yield hkd, engine
    finally:
        if not hkd.wait(0):
            hkd.stop()
        engine.dispose()


def _running_vm(engine: Engine, hkd: Hkd, node: LxcNode, image: Path, n: int) -> tuple[int, int]:
    assert hkd.host is not None
    vm_id, _ = add_lxc_vm(engine, node, image, n)
    command(engine, vm_id, "start", hkd.host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", 90, f"VM {vm_id} running")
    pid = runtime(engine, vm_id)["vm_pid"]
    assert isinstance(pid, int)
    assert Path(f"/proc/{pid}").exists()
    return vm_id, pid


def test_fencing_stops_a_running_desktop(
    own_cluster: EmbeddedCluster, lxc_hkd: tuple[Hkd, Engine], lxc_node: LxcNode,
    test_image: Path,
) -> None:  # fmt: skip
    hkd, engine = lxc_hkd
    vm_id, pid = _running_vm(engine, hkd, lxc_node, test_image, 1)
    fd = os.pidfd_open(pid)
    try:
        with frozen(own_cluster):  # the database accepts and never answers: cut off
            frozen_at = boot_clock()
            ready, _, _ = select.select([fd], [], [], 60)
            died_at = boot_clock()
            assert ready, "the desktop still runs on a node cut off from the database"
            wait_for(lambda: hkd.fenced, 5, "the HKD's own fence (its watchdog may be first)")
            s = hkd.settings
            assert died_at - frozen_at <= s.ticker_timeout + s.fence_kill_time + 0.5
            assert not hkd.backend.is_alive(vm_id)
    finally:
        os.close(fd)
    wait_for(lambda: not hkd.fenced, 60, "the node to leave the fenced state")
    wait_for(lambda: state_of(engine, vm_id) == "stopped", 60, "the killed desktop recorded")
    wait_for(lambda: not leaks(hkd.backend, vm_id, lxc_node.storage), 30, "its clean-up")  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_60_s_database_stop_keeps_every_desktop_running_and_answering(
    own_cluster: EmbeddedCluster, lxc_hkd: tuple[Hkd, Engine], lxc_node: LxcNode,
    test_image: Path,
) -> None:  # fmt: skip
    hkd, engine = lxc_hkd
    assert hkd.host is not None
    vms = [_running_vm(engine, hkd, lxc_node, test_image, n) for n in (1, 2)]
    engine.dispose()
    own_cluster.stop()
    try:
        deadline = boot_clock() + 60
        while boot_clock() < deadline:  # watched all along, not only at the end
            for _, pid in vms:
                assert Path(f"/proc/{pid}").exists(), "a desktop died in a database outage"
            assert hkd.fencer.fence_count == 0, "the node fenced itself for an outage"
            time.sleep(0.5)
    finally:
        own_cluster.start()
    wait_for(lambda: host_state(engine, hkd.host.id) == "running", 30, "heartbeats again")  # type: ignore[union-attr]
    for vm_id, pid in vms:
        assert Path(f"/proc/{pid}").exists()
        assert runtime(engine, vm_id)["vm_pid"] == pid
        assert state_of(engine, vm_id) == "running"
        wait_for(lambda v=vm_id: vma_answers(hkd, engine, v), 30, f"VMA of VM {vm_id}")  # type: ignore[misc]
    assert hkd.fencer.fence_count == 0
    assert not hkd.fenced
