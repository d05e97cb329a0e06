"""The HKD process wiring with the fake backend: refusals, NOTIFY-driven claims,
adoption after a restart, leftovers, two nodes watching each other, host commands."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, EmbeddedCluster, make_engine, upgrade
from qvd.hkd.backends.base import NetworkSpec, VmSpec
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd, HkdStartError
from qvd.hkd.lease import boot_clock
from tests.conftest import throwaway_cluster
from tests.hkd.conftest import (
    FakeVma,
    add_host,
    add_vm,
    command,
    frozen,
    hkd_config,
    host_state,
    runtime,
    state_of,
    wait_for,
)


def test_refuses_without_its_host_row(db: DatabaseTarget, run_dir: Path) -> None:
    hkd = Hkd(hkd_config(run_dir, "ghost"), backend=FakeBackend(), vma=FakeVma(), target=db)
    with pytest.raises(HkdStartError, match="no host named 'ghost' in the database"):
        hkd.start()


def test_refuses_an_unmigrated_database(empty_db: DatabaseTarget, run_dir: Path) -> None:
    hkd = Hkd(hkd_config(run_dir), backend=FakeBackend(), vma=FakeVma(), target=empty_db)
    with pytest.raises(HkdStartError, match=r"no QVD schema; run `qvd db init`"):
        hkd.start()


def test_one_hkd_per_node(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    add_host(engine)
    first = Hkd(hkd_config(run_dir), backend=FakeBackend(), vma=FakeVma(), target=db)
    first.start()
    started.append(first)
    second = Hkd(hkd_config(run_dir), backend=FakeBackend(), vma=FakeVma(), target=db)
    with pytest.raises(HkdStartError, match=r"another HKD .* holds"):
        second.start()


def test_commands_are_claimed_on_notify_not_by_polling(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    host = add_host(engine)
    vma = FakeVma()
    # resync every 60 s: within the 5 s this test waits, only a NOTIFY can wake the HKD
    config = hkd_config(run_dir, **{"internal.hkd.poll.delay": "60"})
    hkd = Hkd(config, backend=FakeBackend(), vma=vma, target=db)
    hkd.start()
    started.append(hkd)
    assert host_state(engine, host.id) == "running"
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    command(engine, vm_id, "start", host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", 5, "running")
    command(engine, vm_id, "stop")
    wait_for(lambda: state_of(engine, vm_id) == "stopped", 5, "stopped")
    hkd.stop()
    assert host_state(engine, host.id) == "stopped"


def test_restart_adopts_running_vms_and_cleans_leftovers(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    host = add_host(engine)
    backend, vma = FakeBackend(), FakeVma()
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    hkd = Hkd(hkd_config(run_dir), backend=backend, vma=vma, target=db)
    hkd.start()
    started.append(hkd)
    command(engine, vm_id, "start", host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", what="running")
    hkd.halt()  # the process dies; the VM keeps running

    # something of a VM this node no longer has is still lying around
    backend.prepare(
        VmSpec(
            vm_id=99999,
            name="ghost",
            di_id=1,
            image=Path("/nonexistent"),
            memory_mib=64,
            vcpus=1,
            cpu_weight=100,
            network=NetworkSpec(
                bridge="b",
                address="10.231.9.9",
                prefix=16,
                mac="54:52:00:00:09:09",
                host_device="qvd99999",
            ),
            vma_secret="x" * 64,
        )
    )
    calls_before = len(backend.calls)
    pid_before = backend.vms[vm_id].pid

    pings_before = len(vma.calls)
    again = Hkd(hkd_config(run_dir), backend=backend, vma=vma, target=db)
    again.start()  # adopts before it returns
    started.append(again)
    # the new HKD's workers took the VM over: they ping its agent
    wait_for(lambda: ("ping", ip) in vma.calls[pings_before:], 30, "a ping of the adopted VM")
    after = backend.calls[calls_before:]
    assert ("cleanup", 99999) in after
    assert not any(
        vm == vm_id and op != "prepare"
        for op, vm in after
        if op in {"start", "stop", "kill", "cleanup"}
    )
    assert backend.vms[vm_id].pid == pid_before
    assert state_of(engine, vm_id) == "running"


def test_stopping_the_hkd_can_stop_its_vms(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    host = add_host(engine)
    backend, vma = FakeBackend(), FakeVma()
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    config = hkd_config(run_dir, **{"internal.hkd.stopping.vms": "1"})
    hkd = Hkd(config, backend=backend, vma=vma, target=db)
    hkd.start()
    started.append(hkd)
    command(engine, vm_id, "start", host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", what="running")
    hkd.stop()
    assert state_of(engine, vm_id) == "stopped"
    assert "its node was shut down" in str(runtime(engine, vm_id)["last_error"])
    assert backend.list_running() == set()


def test_a_host_stop_command_stops_the_hkd(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    host = add_host(engine)
    hkd = Hkd(hkd_config(run_dir), backend=FakeBackend(), vma=FakeVma(), target=db)
    hkd.start()
    started.append(hkd)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE host_runtimes SET cmd = 'stop' WHERE host_id = :h"), {"h": host.id}
        )
    assert hkd.wait(10)
    assert host_state(engine, host.id) == "stopped"


def test_a_silent_node_is_marked_lost_and_recovers(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    host_a = add_host(engine, "node-a", "10.231.0.2")
    host_b = add_host(engine, "node-b", "10.231.0.3")
    backend_a, vma = FakeBackend(), FakeVma()
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    node_a = Hkd(hkd_config(run_dir, "node-a"), backend=backend_a, vma=vma, target=db)
    node_b = Hkd(hkd_config(run_dir, "node-b"), backend=FakeBackend(), vma=vma, target=db)
    node_a.start()
    node_b.start()
    started.extend([node_a, node_b])
    command(engine, vm_id, "start", host_a.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", what="running on A")

    node_a.halt()  # A's heartbeat stops
    wait_for(lambda: host_state(engine, host_a.id) == "lost", 15, "A marked lost")
    row = runtime(engine, vm_id)
    assert (row["vm_state"], row["host_id"]) == ("stopped", None)
    assert "marked lost" in str(row["last_error"])
    assert host_state(engine, host_b.id) == "running"

    # A comes back: it leaves `lost`, and kills the copy of the VM it still runs
    assert backend_a.is_alive(vm_id)
    back = Hkd(hkd_config(run_dir, "node-a"), backend=backend_a, vma=vma, target=db)
    back.start()
    started.append(back)
    wait_for(lambda: host_state(engine, host_a.id) == "running", 5, "A running again")
    wait_for(lambda: vm_id not in backend_a.list_leftovers(), 5, "the orphan cleaned up")
    assert not backend_a.is_alive(vm_id)


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedCluster]:
    """A cluster of its own, to restart under a running HKD."""
    with throwaway_cluster("qvd-test-pg-restart-") as cluster:
        yield cluster


def test_a_database_outage_longer_than_the_fence_keeps_every_vm(
    own_cluster: EmbeddedCluster, run_dir: Path, started: list[Hkd]
) -> None:
    """The database is down for everyone (no socket) for three fence timeouts: the node
    must not fence, its VM keeps running throughout, no peer marks it lost after the
    restart, and it serves commands again."""
    target = own_cluster.target()
    engine = make_engine(target)
    upgrade(engine)
    host = add_host(engine, "node-a", "10.231.0.2")
    peer_host = add_host(engine, "node-b", "10.231.0.3")
    backend, vma = FakeBackend(), FakeVma()
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    hkd = Hkd(hkd_config(run_dir, "node-a"), backend=backend, vma=vma, target=target)
    peer = Hkd(hkd_config(run_dir, "node-b"), backend=FakeBackend(), vma=vma, target=target)
    hkd.start()
    peer.start()
    started.extend([hkd, peer])
    command(engine, vm_id, "start", host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", what="running")
    pid = backend.vms[vm_id].pid
    engine.dispose()

    own_cluster.stop()
    outage = 3 * hkd.settings.ticker_timeout
    deadline = time.monotonic() + outage
    while time.monotonic() < deadline:  # watched all along, not only at the end
        assert backend.is_alive(vm_id), "the VM was killed during a database outage"
        assert hkd.fencer.fence_count == 0, "the node fenced itself for an outage"
        time.sleep(0.05)
    own_cluster.start()

    engine = make_engine(target)
    wait_for(lambda: not hkd.fenced and host_state(engine, host.id) == "running", 15, "beats")
    time.sleep(2 * hkd.settings.cluster_delay + 0.5)  # the peer looked at us since
    assert host_state(engine, host.id) == "running"
    assert host_state(engine, peer_host.id) == "running"
    assert (state_of(engine, vm_id), runtime(engine, vm_id)["host_id"]) == ("running", host.id)
    assert backend.vms[vm_id].pid == pid
    assert backend.is_alive(vm_id)
    assert hkd.fencer.fence_count == 0
    other_id, other_ip = add_vm(engine)  # and it serves commands again
    vma.alive.add(other_ip)
    command(engine, other_id, "start", host.id)
    wait_for(lambda: state_of(engine, other_id) == "running", 15, "running after the outage")
    hkd.stop()
    peer.stop()
    engine.dispose()


def test_fencing_when_the_database_hangs(
    own_cluster: EmbeddedCluster, run_dir: Path, started: list[Hkd]
) -> None:
    """A database that accepts and never answers (this node is cut off): the fence
    timer kills the VM on time although the heartbeat call itself hangs."""
    target = own_cluster.target()
    engine = make_engine(target)
    upgrade(engine)
    host = add_host(engine)
    backend, vma = FakeBackend(), FakeVma()
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    hkd = Hkd(hkd_config(run_dir), backend=backend, vma=vma, target=target)
    hkd.start()
    started.append(hkd)
    command(engine, vm_id, "start", host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", what="running")
    engine.dispose()
    with frozen(own_cluster):
        frozen_at = boot_clock()
        wait_for(lambda: hkd.fenced, 15, "fencing")
        assert not backend.is_alive(vm_id)
        fenced_at = hkd.fencer.fenced_at
        assert fenced_at is not None
        # counted from the last proof, which came before the freeze: never later than
        # the fence timeout (plus the timer's period) after it
        assert fenced_at - frozen_at <= hkd.settings.ticker_timeout + 0.5
        assert hkd.fencer.fence_count == 1
    wait_for(lambda: not hkd.fenced, 30, "recovery")
    engine = make_engine(target)
    wait_for(lambda: state_of(engine, vm_id) == "stopped", 10, "the killed VM recorded")
    engine.dispose()


def test_the_heartbeat_path_has_tight_database_limits(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    add_host(engine)
    hkd = Hkd(hkd_config(run_dir), backend=FakeBackend(), vma=FakeVma(), target=db)
    hkd.start()
    started.append(hkd)
    expected_ms = round(hkd.settings.heartbeat_call_timeout * 1000)
    with hkd.heartbeat_engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar_one() == f"{expected_ms}ms"
        raw = conn.connection.dbapi_connection
        assert raw is not None
        info = raw.info.get_parameters()  # type: ignore[attr-defined]
        assert info["tcp_user_timeout"] == str(expected_ms)
        assert info["keepalives"] == "1"
        assert info["connect_timeout"] == str(hkd.settings.heartbeat_connect_timeout)
    hkd.stop()


def test_the_backends_choices_are_logged_at_start(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    class Chosen(FakeBackend):
        def facts(self) -> dict[str, str]:
            return {"accel": "tcg"}

    add_host(engine)
    hkd = Hkd(hkd_config(run_dir), backend=Chosen(), vma=FakeVma(), target=db)
    with caplog.at_level("INFO", logger="qvd.hkd"):
        hkd.start()
    started.append(hkd)
    assert "backend=fake start_timeout=0 accel=tcg" in caplog.messages
    with engine.connect() as conn:  # and kept in the database for /metrics
        stored = conn.execute(text("SELECT backend_facts FROM host_runtimes")).scalar_one()
    assert json.loads(stored) == {"backend": "fake", "accel": "tcg"}


@pytest.mark.parametrize(
    ("extra", "reason"),
    [({"vm.hypervisor": "xen"}, "not a known backend"),
     ({"vm.hypervisor": "lxc", "vm.overlay.size": "-1"}, r"vm\.overlay\.size is -1")],
)  # fmt: skip
def test_a_backend_that_cannot_be_made_stops_the_start_with_its_reason(
    db: DatabaseTarget, engine: Engine, run_dir: Path, extra: dict[str, str], reason: str
) -> None:
    add_host(engine)
    hkd = Hkd(hkd_config(run_dir, **extra), vma=FakeVma(), target=db)
    with pytest.raises(HkdStartError, match=rf"backend cannot start: .*{reason}"):
        hkd.start()
    hkd.stop()  # nothing runs: stopping is a no-op, and the lock is free again
    again = Hkd(hkd_config(run_dir), backend=FakeBackend(), vma=FakeVma(), target=db)
    again.start()
    again.stop()


def test_a_killed_watchdog_is_started_again_and_a_starting_one_is_not_news(
    db: DatabaseTarget,
    engine: Engine,
    run_dir: Path,
    started: list[Hkd],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The HKD looks at its watchdog every second. One it has just started may still be
    importing before it takes its lock: that is not "gone" (the error was logged at
    every start on a loaded machine). One that was killed is started again, loudly."""
    import os
    import signal

    from qvd.hkd.pidlock import LockHeld, PidLock

    add_host(engine)
    config = hkd_config(run_dir, **{"internal.hkd.watchdog.enable": "1"})
    hkd = Hkd(config, backend=FakeBackend(), vma=FakeVma(), target=db)
    hkd.start()
    started.append(hkd)
    watchdog = hkd.watchdog
    assert watchdog is not None
    try:
        wait_for(watchdog.running, 30, "the watchdog holding its lock")
        time.sleep(1.5)  # a few of the HKD's looks at it
        gone = [r for r in caplog.records if "watchdog was gone" in r.getMessage()]
        assert not gone, "a starting watchdog was reported gone"

        lock = PidLock(hkd.settings.watchdog_lock_path)
        with pytest.raises(LockHeld) as held:
            lock.acquire()
        os.kill(int(held.value.holder), signal.SIGKILL)
        wait_for(
            lambda: any("watchdog was gone" in r.getMessage() for r in caplog.records),
            30, "the HKD noticing the killed watchdog",
        )  # fmt: skip
        wait_for(watchdog.running, 30, "a new watchdog holding the lock")
    finally:
        hkd.stop()
        watchdog.end()
