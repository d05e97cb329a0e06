"""An in-memory backend for tests of the HKD, with failure injection.

It keeps a record of every call (``calls``) so tests can assert the exact sequence
of operations a reconcile made, and it can be told to fail an operation a number of
times (``fail_next``) or to have a VM die (``crash``).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from qvd.hkd.backends.base import (
    Backend,
    BackendError,
    Capabilities,
    TerminalBackendError,
    VmSpec,
)

__all__ = ["FakeBackend", "FakeVm"]


@dataclass
class FakeVm:
    spec: VmSpec
    pid: int
    prepared: bool = True
    running: bool = False
    stopping: bool = False
    ignores_sigterm: bool = False


@dataclass
class FakeBackend(Backend):
    """Backend whose VMs are dictionary entries."""

    name: str = "fake"
    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(needs_vma_poweroff=False)
    )
    vms: dict[int, FakeVm] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)
    failures: dict[str, list[BackendError]] = field(default_factory=dict)
    _pids: itertools.count[int] = field(default_factory=lambda: itertools.count(40000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- test controls -----------------------------------------------------------------
    def fail_next(self, operation: str, times: int = 1, *, terminal: bool = False) -> None:
        """Make the next ``times`` calls of ``operation`` raise."""
        kind = TerminalBackendError if terminal else BackendError
        self.failures.setdefault(operation, []).extend(
            kind(f"injected failure of {operation}") for _ in range(times)
        )

    def crash(self, vm_id: int) -> None:
        """The VM dies on its own."""
        with self._lock:
            self.vms[vm_id].running = False

    def _record(self, operation: str, vm_id: int) -> None:
        with self._lock:
            self.calls.append((operation, vm_id))
            pending = self.failures.get(operation)
            if pending:
                raise pending.pop(0)

    # ---- the interface -------------------------------------------------------------------
    def prepare(self, spec: VmSpec) -> None:
        self._record("prepare", spec.vm_id)
        with self._lock:
            vm = self.vms.get(spec.vm_id)
            if vm is None:
                self.vms[spec.vm_id] = FakeVm(spec=spec, pid=0)
            else:
                vm.spec = spec
                vm.prepared = True

    def start(self, spec: VmSpec) -> int:
        self._record("start", spec.vm_id)
        with self._lock:
            vm = self.vms.get(spec.vm_id)
            if vm is None or not vm.prepared:
                raise BackendError(f"VM {spec.vm_id} started before it was prepared")
            if not vm.running:
                vm.pid = next(self._pids)
                vm.running = True
                vm.stopping = False
            return vm.pid

    def stop(self, vm_id: int) -> None:
        self._record("stop", vm_id)
        with self._lock:
            vm = self.vms.get(vm_id)
            if vm is not None and vm.running and not vm.ignores_sigterm:
                vm.running = False

    def kill(self, vm_id: int) -> None:
        self._record("kill", vm_id)
        with self._lock:
            vm = self.vms.get(vm_id)
            if vm is not None:
                vm.running = False

    def is_alive(self, vm_id: int) -> bool:
        with self._lock:
            vm = self.vms.get(vm_id)
            return vm is not None and vm.running

    def list_running(self) -> set[int]:
        with self._lock:
            return {i for i, vm in self.vms.items() if vm.running}

    def list_leftovers(self) -> set[int]:
        with self._lock:
            return set(self.vms)

    def cleanup(self, vm_id: int) -> None:
        self._record("cleanup", vm_id)
        with self._lock:
            vm = self.vms.get(vm_id)
            if vm is not None and vm.running:
                raise BackendError(f"VM {vm_id} still runs: stop it before cleaning up")
            self.vms.pop(vm_id, None)


def from_config(config: object = None) -> FakeBackend:
    """What ``load_backend("fake", config=...)`` makes (e.g. in a node's fencing watchdog
    process): an empty fake backend; its VMs live only in the process that made them."""
    return FakeBackend()
