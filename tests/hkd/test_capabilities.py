"""Both capabilities of a backend drive the HKD (real database, fake backend): a
backend's ``start_timeout`` lengthens the wait for its VMA at start, and
``needs_vma_poweroff`` makes a clean stop go through the VMA's ``poweroff`` first."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from qvd.hkd.backends.base import Capabilities
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import backend_facts_line
from qvd.hkd.reconcile import Reconciler
from qvd.hkd.settings import HkdSettings
from tests.hkd.conftest import FakeVma, add_host, add_vm, command, hkd_config, runtime
from tests.hkd.test_reconcile import drive


def _parts(
    engine: Engine, run_dir: Path, caps: Capabilities
) -> tuple[Reconciler, FakeBackend, FakeVma]:
    backend = FakeBackend(capabilities=caps)
    vma = FakeVma()
    # internal.hkd.vmhandler.vma.failed.max_time.on.starting is 1 s in hkd_config
    settings = HkdSettings.from_config(hkd_config(run_dir))
    return Reconciler(engine, backend, add_host(engine), settings, vma), backend, vma


def _in_state_for(engine: Engine, vm_id: int, seconds: float) -> None:
    """The VM entered its state ``seconds`` ago (by the database's clock)."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE vm_runtimes SET vm_state_ts = now() - make_interval(secs => :s) "
                 "WHERE vm_id = :v"),
            {"s": seconds, "v": vm_id},
        )  # fmt: skip


def test_a_slow_booting_backend_gets_its_start_timeout(engine: Engine, run_dir: Path) -> None:
    rec, backend, _ = _parts(engine, run_dir, Capabilities(needs_vma_poweroff=False,
                                                           start_timeout=30))  # fmt: skip
    assert rec.start_patience == 30
    vm_id, _ = add_vm(engine)
    command(engine, vm_id, "start", rec.host.id)
    assert rec.reconcile(vm_id).state == "starting"
    _in_state_for(engine, vm_id, 20)  # past the node's 1 s, within the backend's 30 s
    assert rec.reconcile(vm_id).state == "starting"
    assert backend.is_alive(vm_id)
    _in_state_for(engine, vm_id, 31)
    assert rec.reconcile(vm_id).state == "stopping"
    assert "did not answer within 30 s" in str(runtime(engine, vm_id)["last_error"])


def test_a_short_start_timeout_never_shortens_the_nodes_patience(
    engine: Engine, run_dir: Path
) -> None:
    rec, _, _ = _parts(engine, run_dir, Capabilities(needs_vma_poweroff=False,
                                                     start_timeout=0.1))  # fmt: skip
    assert rec.start_patience == 1
    vm_id, _ = add_vm(engine)
    command(engine, vm_id, "start", rec.host.id)
    assert rec.reconcile(vm_id).state == "starting"
    _in_state_for(engine, vm_id, 0.5)
    assert rec.reconcile(vm_id).state == "starting"
    _in_state_for(engine, vm_id, 1.5)
    assert rec.reconcile(vm_id).state == "stopping"


def _stop_calls(engine: Engine, run_dir: Path, *, poweroff: bool) -> list[tuple[str, str]]:
    rec, backend, vma = _parts(engine, run_dir, Capabilities(needs_vma_poweroff=poweroff))
    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    command(engine, vm_id, "start", rec.host.id)
    drive(rec, vm_id, "running")
    command(engine, vm_id, "stop")
    vma.calls.clear()
    drive(rec, vm_id, "stopped")
    assert ("stop", vm_id) in backend.calls
    return [c for c in vma.calls if c[0] == "poweroff"]


def test_a_vm_that_needs_it_is_powered_off_through_its_vma(engine: Engine, run_dir: Path) -> None:
    calls = _stop_calls(engine, run_dir, poweroff=True)
    assert len(calls) == 1


def test_a_container_is_stopped_without_the_vma(engine: Engine, run_dir: Path) -> None:
    assert _stop_calls(engine, run_dir, poweroff=False) == []


def test_the_facts_line_names_the_backend_and_its_choices() -> None:
    class Chosen(FakeBackend):
        def facts(self) -> dict[str, str]:
            return {"accel": "tcg", "homes": "per-vm"}

    caps = Capabilities(needs_vma_poweroff=True, start_timeout=180)
    assert backend_facts_line(Chosen(capabilities=caps)) == (
        "backend=fake start_timeout=180 accel=tcg homes=per-vm"
    )
    assert backend_facts_line(FakeBackend()) == "backend=fake start_timeout=0"
