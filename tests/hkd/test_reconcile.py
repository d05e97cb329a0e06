"""The reconcile loop, one VM at a time, on a real database with the fake backend."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.reconcile import Outcome, Reconciler
from qvd.hkd.settings import HkdSettings
from tests.hkd.conftest import FakeVma, add_host, add_vm, command, hkd_config, runtime


def make_parts(
    engine: Engine, run_dir: Path, clock: Callable[[], float] = time.monotonic
) -> tuple[Reconciler, FakeBackend, FakeVma]:
    host = add_host(engine)
    backend = FakeBackend()
    vma = FakeVma()
    settings = HkdSettings.from_config(hkd_config(run_dir))
    return Reconciler(engine, backend, host, settings, vma, clock=clock), backend, vma


@pytest.fixture
def parts(engine: Engine, run_dir: Path) -> tuple[Reconciler, FakeBackend, FakeVma]:
    return make_parts(engine, run_dir)


class ManualClock:
    """The reconciler's clock for the patience tests: time moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked(
    engine: Engine, run_dir: Path, clock: ManualClock
) -> tuple[Reconciler, FakeBackend, FakeVma]:
    """The parts, with a reconciler that reads ``clock`` instead of the wall clock."""
    return make_parts(engine, run_dir, clock)


def drive(rec: Reconciler, vm_id: int, until: str, limit: float = 60.0) -> list[str]:
    """Reconcile as the workers would, honouring requeue delays, until ``until``."""
    states: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        outcome: Outcome = rec.reconcile(vm_id)
        if not states or states[-1] != outcome.state:
            states.append(str(outcome.state))
        if outcome.state == until:
            return states
        if outcome.requeue_after is None:
            break
        time.sleep(min(outcome.requeue_after, 0.05))
    raise AssertionError(f"never reached {until}: {states}")


def running_vm(engine: Engine, rec: Reconciler, vma: FakeVma) -> tuple[int, str]:
    """A VM started on this host, its VMA answering."""
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    command(engine, vm_id, "start", rec.host.id)
    drive(rec, vm_id, "running")
    return vm_id, ip


def test_start_then_stop(engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]) -> None:
    rec, backend, vma = parts
    vm_id, ip = add_vm(engine)
    command(engine, vm_id, "start", rec.host.id)
    first = rec.reconcile(vm_id)
    assert first.state == "starting"
    row = runtime(engine, vm_id)
    assert row["vm_cmd"] is None
    assert (row["vm_address"], row["vm_vma_port"], row["vm_x_port"]) == (ip, 3030, 4100)
    assert row["current_di_id"] is not None
    assert row["vm_pid"] == backend.vms[vm_id].pid
    vma.alive.add(ip)
    assert drive(rec, vm_id, "running") == ["running"]
    row = runtime(engine, vm_id)
    assert row["vm_state"] == "running"
    assert row["vma_ok_ts"] is not None
    calls = list(backend.calls)
    assert calls == [("prepare", vm_id), ("start", vm_id)]

    # a second pass changes nothing
    rec.reconcile(vm_id)
    assert backend.calls == calls
    assert runtime(engine, vm_id)["vm_state"] == "running"

    with engine.begin() as conn:
        counters = conn.execute(
            text("SELECT run_attempts, run_ok FROM vm_counters WHERE vm_id = :v"), {"v": vm_id}
        ).one()
    assert tuple(counters) == (1, 1)

    command(engine, vm_id, "stop")
    assert drive(rec, vm_id, "stopped") == ["stopping", "stopped"]
    assert backend.calls[len(calls) :] == [("stop", vm_id), ("cleanup", vm_id)]
    row = runtime(engine, vm_id)
    assert row["vm_state"] == "stopped"
    assert all(
        row[c] is None
        for c in (
            "host_id",
            "vm_cmd",
            "vm_pid",
            "vm_address",
            "vm_vma_port",
            "current_di_id",
        )
    )
    assert vm_id not in backend.vms


def test_each_run_has_its_own_vma_secret(
    engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]
) -> None:
    rec, backend, vma = parts
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    secrets = []
    for _ in range(2):
        command(engine, vm_id, "start", rec.host.id)
        drive(rec, vm_id, "running")
        secrets.append(backend.vms[vm_id].spec.vma_secret)
        command(engine, vm_id, "stop")
        drive(rec, vm_id, "stopped")
    assert len(set(secrets)) == 2
    assert all(len(s) == 64 for s in secrets)


def test_no_published_di_is_refused_with_a_reason(
    engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]
) -> None:
    rec, backend, _ = parts
    vm_id, _ = add_vm(engine, published=False)
    command(engine, vm_id, "start", rec.host.id)
    drive(rec, vm_id, "stopped")
    row = runtime(engine, vm_id)
    assert row["host_id"] is None
    assert "no published, unblocked disk image" in str(row["last_error"])
    assert ("start", vm_id) not in backend.calls


def test_terminal_backend_error_releases_the_vm(
    engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]
) -> None:
    rec, backend, _ = parts
    vm_id, _ = add_vm(engine)
    backend.fail_next("prepare", terminal=True)
    command(engine, vm_id, "start", rec.host.id)
    drive(rec, vm_id, "stopped")
    assert "injected failure of prepare" in str(runtime(engine, vm_id)["last_error"])
    assert backend.calls[-1] == ("cleanup", vm_id)


def test_a_vma_that_never_answers_stops_the_vm(
    engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]
) -> None:
    rec, backend, _ = parts
    vm_id, _ = add_vm(engine)
    command(engine, vm_id, "start", rec.host.id)
    assert drive(rec, vm_id, "stopped") == ["starting", "stopping", "stopped"]
    assert "did not answer within 1 s" in str(runtime(engine, vm_id)["last_error"])
    assert vm_id not in backend.vms


def quiet_for(rec: Reconciler, vm_id: int, clock: ManualClock, seconds: float) -> str:
    """Let ``seconds`` pass on the reconciler's clock in small steps, reconciling at
    each; the state after the last step."""
    state = ""
    for _ in range(round(seconds / 0.1)):
        clock.advance(0.1)
        state = str(rec.reconcile(vm_id).state)
    return state


def test_a_dead_vma_while_running_stops_the_vm(
    engine: Engine, clocked: tuple[Reconciler, FakeBackend, FakeVma], clock: ManualClock
) -> None:
    """A refused agent has 0.5 s of patience (internal.hkd.vmhandler.vma.failed.max_time
    .on.running in the test config): the VM is kept before, stopped after."""
    rec, _, vma = clocked
    vm_id, ip = running_vm(engine, rec, vma)
    vma.alive.discard(ip)
    assert quiet_for(rec, vm_id, clock, 0.4) == "running"
    assert quiet_for(rec, vm_id, clock, 0.2) == "stopping"
    drive(rec, vm_id, "stopped")
    assert "VMA stopped answering" in str(runtime(engine, vm_id)["last_error"])


def test_a_silent_vma_gets_the_longer_patience(
    engine: Engine, clocked: tuple[Reconciler, FakeBackend, FakeVma], clock: ManualClock
) -> None:
    """Timeouts (a hung agent or a VM starved of CPU) have their own patience: with the
    silent limit raised (2 s here) the VM outlives the dead-agent limit (0.5 s)."""
    rec, _, vma = clocked
    vm_id, ip = running_vm(engine, rec, vma)
    vma.alive.discard(ip)
    vma.silent.add(ip)
    assert quiet_for(rec, vm_id, clock, 1.9) == "running"
    assert quiet_for(rec, vm_id, clock, 0.2) == "stopping"
    drive(rec, vm_id, "stopped")
    assert "VMA stopped answering (timeouts) for 2 s" in str(runtime(engine, vm_id)["last_error"])


def test_a_slow_vma_that_answers_again_keeps_its_vm(
    engine: Engine, clocked: tuple[Reconciler, FakeBackend, FakeVma], clock: ManualClock
) -> None:
    """An answer resets the patience: two silences of 1.9 s, each under the 2 s limit,
    with one answer between them, keep the VM."""
    rec, _, vma = clocked
    vm_id, ip = running_vm(engine, rec, vma)
    vma.alive.discard(ip)
    vma.silent.add(ip)
    assert quiet_for(rec, vm_id, clock, 1.9) == "running"
    vma.alive.add(ip)
    assert quiet_for(rec, vm_id, clock, 0.1) == "running"
    vma.alive.discard(ip)
    assert quiet_for(rec, vm_id, clock, 1.9) == "running"
    assert runtime(engine, vm_id)["vm_state"] == "running"


def test_a_crashed_vm_is_cleaned_up(
    engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]
) -> None:
    rec, backend, vma = parts
    vm_id, _ip = running_vm(engine, rec, vma)
    backend.crash(vm_id)
    drive(rec, vm_id, "stopped")
    assert runtime(engine, vm_id)["last_error"] == "the VM exited on its own"
    assert backend.calls[-1] == ("cleanup", vm_id)


def test_a_vm_that_ignores_sigterm_is_killed(
    engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]
) -> None:
    rec, backend, vma = parts
    vm_id, _ip = running_vm(engine, rec, vma)
    backend.vms[vm_id].ignores_sigterm = True
    command(engine, vm_id, "stop")
    drive(rec, vm_id, "stopped")
    tail = [c for c in backend.calls if c[0] in {"stop", "kill", "cleanup"}]
    assert tail == [("stop", vm_id), ("kill", vm_id), ("cleanup", vm_id)]


def test_a_vm_not_assigned_here_is_killed_and_cleaned(
    engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]
) -> None:
    rec, backend, vma = parts
    vm_id, _ip = running_vm(engine, rec, vma)
    with engine.begin() as conn:  # a peer released it (this node was marked lost)
        conn.execute(
            text("UPDATE vm_runtimes SET host_id = NULL, vm_state = 'stopped' WHERE vm_id = :v"),
            {"v": vm_id},
        )
    rec.reconcile(vm_id)
    time.sleep(0.01)
    rec.reconcile(vm_id)
    assert backend.calls[-2:] == [("kill", vm_id), ("cleanup", vm_id)]
    assert backend.list_leftovers() == set()


def test_expirations(engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]) -> None:
    rec, _, vma = parts
    vm_id, ip = running_vm(engine, rec, vma)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE vm_runtimes SET vm_expiration_soft = :t WHERE vm_id = :v"),
            {"t": past, "v": vm_id},
        )
    rec.reconcile(vm_id)
    rec.reconcile(vm_id)
    assert vma.calls.count(("expire", ip)) == 1  # signalled once, not on every pass
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE vm_runtimes SET vm_expiration_hard = :t WHERE vm_id = :v"),
            {"t": past, "v": vm_id},
        )
    drive(rec, vm_id, "stopped")
    assert runtime(engine, vm_id)["last_error"] == "hard expiration reached"


def test_a_start_for_another_host_is_not_taken(
    engine: Engine, parts: tuple[Reconciler, FakeBackend, FakeVma]
) -> None:
    rec, backend, _ = parts
    other = add_host(engine, "node2", "10.231.0.3")
    vm_id, _ = add_vm(engine)
    command(engine, vm_id, "start", other.id)
    assert rec.reconcile(vm_id).requeue_after is None
    row = runtime(engine, vm_id)
    assert (row["vm_cmd"], row["vm_state"], row["host_id"]) == ("start", "stopped", other.id)
    assert backend.calls == []
