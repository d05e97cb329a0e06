"""Fencing parts against real components: how a failed heartbeat is read (real sockets,
a real PostgreSQL stopped or frozen), peers counting silence from the database's own
start, the fence timer, and the watchdog's loop over a lease file."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from qvd.db import DatabaseTarget, EmbeddedCluster, make_engine, upgrade
from qvd.hkd import store
from qvd.hkd.backends.base import NetworkSpec, VmSpec
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.fencing import FenceClock, Fencer, Outage, kill_all, probe_database
from qvd.hkd.lease import Lease, LeaseFile, boot_clock
from qvd.hkd.watchdog import watch
from tests.conftest import free_port, throwaway_cluster
from tests.hkd.conftest import add_host, frozen, wait_for


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedCluster]:
    with throwaway_cluster("qvd-test-pg-fence-") as cluster:
        yield cluster


# ---- down for everyone, or cut off ----------------------------------------------------------
def test_no_socket_and_a_refused_port_are_down_for_everyone(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    no_socket = DatabaseTarget({"host": str(run_dir), "port": "5432"})
    assert probe_database(no_socket, 1.0) is Outage.DOWN_FOR_EVERYONE
    refused = DatabaseTarget({"host": "127.0.0.1", "port": str(free_port())})
    assert probe_database(refused, 1.0) is Outage.DOWN_FOR_EVERYONE


def test_a_listener_that_never_answers_is_cut_off() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        silent = DatabaseTarget({"host": "127.0.0.1", "port": str(port)})
        assert probe_database(silent, 0.5) is Outage.CUT_OFF


def test_a_real_cluster_stopped_is_down_and_frozen_is_cut_off(
    own_cluster: EmbeddedCluster,
) -> None:
    target = own_cluster.target()
    with frozen(own_cluster):
        assert probe_database(target, 0.5) is Outage.CUT_OFF
    own_cluster.stop()
    try:
        assert probe_database(target, 0.5) is Outage.DOWN_FOR_EVERYONE
    finally:
        own_cluster.start()
    restarting = Exception("FATAL:  the database system is starting up")
    assert probe_database(target, 0.5, restarting) is Outage.DOWN_FOR_EVERYONE


# ---- peers --------------------------------------------------------------------------------------
def test_peers_count_silence_from_the_database_start(own_cluster: EmbeddedCluster) -> None:
    engine = make_engine(own_cluster.target())
    upgrade(engine)
    silent = add_host(engine, "node-a", "10.231.0.2")
    watcher = add_host(engine, "node-b", "10.231.0.3")
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE host_runtimes SET state = 'running', ok_ts = now() - interval '1 hour'"
                " WHERE host_id = :h"
            ),
            {"h": silent.id},
        )
    engine.dispose()
    own_cluster.stop()
    own_cluster.start()  # an outage for everyone: node-a's hour of silence no longer counts
    engine = make_engine(own_cluster.target())
    with engine.begin() as conn:
        assert store.mark_lost_peers(conn, watcher.id, 30) == []
    time.sleep(1.2)
    with engine.begin() as conn:  # silent since the restart for longer than 1 s: lost
        assert store.mark_lost_peers(conn, watcher.id, 1) == [silent.id]
    engine.dispose()


# ---- the fence timer -------------------------------------------------------------------------
def test_the_fence_timer_kills_past_the_deadline_and_recovers() -> None:
    now = [100.0]
    clock = FenceClock(2.0, anchor=100.0, clock=lambda: now[0])
    backend = FakeBackend()
    killed: list[list[int]] = []
    fencer = Fencer(clock, lambda: killed.append(sorted(backend.list_running())) or [])
    fencer.tick()
    assert (fencer.fenced, killed) == (False, [])
    now[0] = 101.99
    fencer.tick()
    assert not fencer.fenced
    now[0] = 102.0
    fencer.tick()
    assert fencer.fenced
    assert fencer.fence_count == 1
    assert len(killed) == 1
    now[0] = 102.5
    fencer.tick()  # within the recheck period: no second kill yet
    assert len(killed) == 1
    now[0] = 103.1
    fencer.tick()  # still fenced: kill again whatever may have started
    assert len(killed) == 2
    assert clock.renew(103.0) == 105.0
    fencer.tick()
    assert not fencer.fenced
    assert clock.renew(50.0) == 105.0  # never backwards


def test_kill_all_kills_every_running_vm() -> None:
    backend = FakeBackend()
    for vm_id in (1, 2, 3):
        backend.prepare(spec(vm_id))
        backend.start(spec(vm_id))
    assert kill_all(backend) == [1, 2, 3]
    assert backend.list_running() == set()


# ---- the watchdog's loop ---------------------------------------------------------------------
def test_the_watchdog_kills_when_the_lease_expires_and_then_exits(run_dir: Path) -> None:
    backend = FakeBackend()
    backend.prepare(spec(7))
    backend.start(spec(7))
    lease = LeaseFile(run_dir / "hkd.lease")
    dead_pid = _a_dead_pid()
    lease.write(Lease(deadline=boot_clock() + 1.0, holder=dead_pid))
    done = threading.Event()
    thread = threading.Thread(target=lambda: (watch(lease, backend), done.set()), daemon=True)
    thread.start()
    time.sleep(0.5)
    assert backend.is_alive(7), "killed before the lease expired"
    wait_for(lambda: not backend.is_alive(7), 5, "the kill at expiry")
    assert done.wait(5), "the watchdog did not exit once its HKD was gone and nothing ran"


def test_the_watchdog_exits_on_a_released_lease_and_leaves_vms(run_dir: Path) -> None:
    backend = FakeBackend()
    backend.prepare(spec(8))
    backend.start(spec(8))
    lease = LeaseFile(run_dir / "hkd.lease")
    lease.write(Lease(deadline=0.0, holder=os.getpid(), released=True))
    watch(lease, backend)
    assert backend.is_alive(8)


def _a_dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def spec(vm_id: int) -> VmSpec:
    return VmSpec(
        vm_id=vm_id,
        name=f"vm{vm_id}",
        di_id=1,
        image=Path("/nonexistent"),
        memory_mib=64,
        vcpus=1,
        cpu_weight=100,
        network=NetworkSpec(
            bridge="b",
            address=f"10.231.9.{vm_id}",
            prefix=16,
            mac=f"54:52:00:00:09:{vm_id:02x}",
            host_device=f"qvd{vm_id}",
        ),
        vma_secret="x" * 64,
    )
