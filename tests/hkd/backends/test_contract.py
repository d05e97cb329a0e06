"""The backend contract (``qvd.hkd.backends.base``), one suite for every backend: fake,
lxc (real unprivileged containers) and kvm (its kit registers in ``conftest.py``).

prepare -> start -> is_alive -> list_running; every operation idempotent; a graceful
stop and a kill each end the VM; cleanup refuses while the VM runs and leaves nothing
(neither in ``list_leftovers`` nor by the kit's own look at the node); a new backend
object (a restarted HKD) sees a running VM and kills and cleans it; and when the HKD
that started a VM dies by SIGKILL, a fresh backend adopts or cleans what it left.
Each case ends with the VM's leftovers checked by the kit (the ``vms`` fixture)."""

from __future__ import annotations

import pickle
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from qvd.hkd.backends.base import Backend, BackendError, VmSpec
from tests.hkd.backends.kits import BackendKit

VmsOf = Callable[[int], VmSpec]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def assert_clean(kit: BackendKit, backend: Backend, vm_id: int) -> None:
    assert not backend.is_alive(vm_id)
    assert vm_id not in backend.list_running()
    assert vm_id not in backend.list_leftovers()
    assert kit.leaks(vm_id) == []


@pytest.fixture
def vms(kit: BackendKit) -> Iterator[VmsOf]:
    """Hands out test VMs; afterwards makes sure (with a new backend object) that each
    ended clean, ending and cleaning what a failed case left before saying so."""
    handed: list[int] = []

    def spec(n: int) -> VmSpec:
        made = kit.spec(n)
        handed.append(made.vm_id)
        return made

    yield spec
    backend = kit.backend()
    left: dict[int, list[str]] = {}
    for vm_id in handed:
        found = kit.leaks(vm_id) + (["listed"] if vm_id in backend.list_leftovers() else [])
        if found:
            left[vm_id] = found
            backend.kill(vm_id)
            wait_until(lambda v=vm_id: not backend.is_alive(v), kit.stop_timeout, "kill")
            backend.cleanup(vm_id)
    backend.close()
    assert left == {}, f"left behind by the case: {left}"


def _running(kit: BackendKit, backend: Backend, spec: VmSpec) -> int:
    backend.prepare(spec)
    pid = backend.start(spec)
    assert pid > 0
    wait_until(lambda: backend.is_alive(spec.vm_id), kit.boot_timeout, "the VM to run")
    return pid


def _kill_and_clean(kit: BackendKit, backend: Backend, vm_id: int) -> None:
    backend.kill(vm_id)
    wait_until(lambda: not backend.is_alive(vm_id), kit.stop_timeout, "the VM to end")
    backend.cleanup(vm_id)
    assert_clean(kit, backend, vm_id)


def test_a_vm_runs_is_listed_refuses_cleanup_and_is_adopted(kit: BackendKit, vms: VmsOf) -> None:
    spec = vms(1)
    vm_id = spec.vm_id
    backend = kit.backend()
    assert not backend.is_alive(vm_id)
    assert vm_id not in backend.list_running()
    pid = _running(kit, backend, spec)
    assert vm_id in backend.list_running()
    assert vm_id in backend.list_leftovers()
    assert backend.start(spec) == pid  # already running: the same VM, not a second one
    with pytest.raises(BackendError):
        backend.cleanup(vm_id)
    assert backend.is_alive(vm_id)  # the refused cleanup touched nothing

    adopter = kit.backend()  # the HKD restarted: a new object sees what runs
    assert adopter.is_alive(vm_id)
    assert vm_id in adopter.list_running()
    assert adopter.start(spec) == pid
    _kill_and_clean(kit, adopter, vm_id)
    assert not backend.is_alive(vm_id)  # the old object agrees
    backend.close()
    adopter.close()


def test_every_operation_is_idempotent_and_a_graceful_stop_ends_the_vm(
    kit: BackendKit, vms: VmsOf
) -> None:
    spec = vms(2)
    vm_id = spec.vm_id
    backend = kit.backend()
    backend.prepare(spec)
    backend.prepare(spec)  # prepared twice: one VM's storage, ready to start
    _running(kit, backend, spec)
    wait_until(lambda: kit.ready(spec), kit.boot_timeout, "the VMA to answer")
    backend.stop(vm_id)  # returns at once
    backend.stop(vm_id)  # asking twice is no harm
    wait_until(lambda: not backend.is_alive(vm_id), kit.stop_timeout, "a graceful stop")
    assert vm_id not in backend.list_running()
    backend.stop(vm_id)  # on a dead VM
    backend.kill(vm_id)
    backend.cleanup(vm_id)
    assert_clean(kit, backend, vm_id)
    backend.cleanup(vm_id)  # on a clean one
    backend.kill(vm_id)
    backend.stop(vm_id)
    assert_clean(kit, backend, vm_id)
    backend.close()


def test_operations_on_a_vm_the_node_never_had_do_nothing(kit: BackendKit, vms: VmsOf) -> None:
    vm_id = vms(3).vm_id
    backend = kit.backend()
    backend.stop(vm_id)
    backend.kill(vm_id)
    backend.cleanup(vm_id)
    assert_clean(kit, backend, vm_id)
    backend.close()


def test_a_prepared_vm_that_never_ran_cleans_up(kit: BackendKit, vms: VmsOf) -> None:
    spec = vms(4)
    backend = kit.backend()
    backend.prepare(spec)
    assert not backend.is_alive(spec.vm_id)
    # the HKD cleans only what is listed: prepared storage must be
    assert spec.vm_id in backend.list_leftovers()
    backend.cleanup(spec.vm_id)
    assert_clean(kit, backend, spec.vm_id)
    backend.close()


# ---- an HKD killed with SIGKILL --------------------------------------------------------------
_DYING_HKD = """
import pickle, sys, time
kit, spec, start = pickle.load(sys.stdin.buffer)
backend = kit.backend()
backend.prepare(spec)
pid = backend.start(spec) if start else 0
sys.stdout.write(f"{pid}\\n")
sys.stdout.flush()
time.sleep(3600)
"""


def _hkd_dies_hard(kit: BackendKit, spec: VmSpec, *, start: bool) -> int:
    """Prepare (and start) ``spec`` from a child process, then SIGKILL that process
    once it has said so; the PID it reported."""
    if not kit.survives_its_maker:
        pytest.skip(f"{kit.name}'s VMs live in the process that made them")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": ":".join(p for p in sys.path if p),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _DYING_HKD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(pickle.dumps((kit, spec, start)))
        child.stdin.close()
        ready, _, _ = select.select([child.stdout], [], [], kit.boot_timeout + 60)
        line = child.stdout.readline() if ready else b""
    finally:
        child.kill()  # SIGKILL, the child alone: what it started must outlive it
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert line.strip().isdigit(), f"the child HKD did not report a start: {line!r}"
    return int(line)


def test_a_vm_started_by_an_hkd_killed_hard_is_adopted(kit: BackendKit, vms: VmsOf) -> None:
    spec = vms(5)
    pid = _hkd_dies_hard(kit, spec, start=True)
    fresh = kit.backend()
    wait_until(lambda: fresh.is_alive(spec.vm_id), kit.boot_timeout, "the orphaned VM")
    assert spec.vm_id in fresh.list_running()
    assert fresh.start(spec) == pid  # adopted: the same VM
    _kill_and_clean(kit, fresh, spec.vm_id)
    fresh.close()


def test_storage_prepared_by_an_hkd_killed_hard_is_cleaned(kit: BackendKit, vms: VmsOf) -> None:
    spec = vms(6)
    _hkd_dies_hard(kit, spec, start=False)
    fresh = kit.backend()
    assert not fresh.is_alive(spec.vm_id)
    assert spec.vm_id in fresh.list_leftovers()  # what the HKD cleans after its restart
    fresh.cleanup(spec.vm_id)
    assert_clean(kit, fresh, spec.vm_id)
    fresh.close()
