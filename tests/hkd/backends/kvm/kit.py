"""The KVM backend's kit for the backend contract suite (``tests/hkd/backends``).

A node of its own (``node.KvmNode``: storage and runtime roots, a bridge without an
address, a unique host-device prefix) whose VMs are the stub guest under real QEMU
(TCG): it boots in well under a second and powers off on ``system_powerdown``, so the
whole contract runs against real QEMU processes, taps and cgroups. ``ready`` is the
stub saying so on its serial console (read through QMP). ``leaks`` looks with its own
eyes: QEMU processes in /proc, taps in /sys/class/net, runtime directories, cpu
cgroups and overlays of the VM.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qvd.hkd.backends.base import Backend, VmSpec
from qvd.hkd.backends.kvm import KvmBackend
from qvd.hkd.backends.kvm.cgroup import CpuGroups
from tests.hkd.backends.kvm.node import KvmNode, kvm_node_made
from tests.hkd.backends.kvm.stubguest import READY

__all__ = ["KvmKit", "open_kit", "qemus_of"]

_FIRST_ID = 63000


@dataclass
class KvmKit:
    node: KvmNode
    name: str = "kvm"
    boot_timeout: float = 60.0
    stop_timeout: float = 30.0
    survives_its_maker: bool = True
    _ready: dict[int, int] = field(default_factory=dict)  # vm_id -> QEMU PID seen ready
    _console: dict[int, str] = field(default_factory=dict)

    def backend(self) -> Backend:
        return self.node.backend()

    def spec(self, n: int) -> VmSpec:
        return self.node.spec(_FIRST_ID + n, name=f"contract{n}")

    def ready(self, spec: VmSpec) -> bool:
        backend = self.node.backend()
        pid = backend.runtime.pid(spec.vm_id)
        if pid is None:
            return False
        if self._ready.get(spec.vm_id) == pid:
            return True
        text = self._console.get(spec.vm_id, "") + backend.console(spec.vm_id)
        self._console[spec.vm_id] = text[-4096:]
        if READY.decode() in text:
            self._ready[spec.vm_id] = pid
            self._console.pop(spec.vm_id, None)
            return True
        return False

    def leaks(self, vm_id: int) -> list[str]:
        found = [f"qemu process {pid}" for pid in qemus_of(self.node.run_kvm, vm_id)]
        tap = Path("/sys/class/net") / f"{self.node.prefix}{vm_id}"
        if tap.exists():
            found.append(f"tap {tap.name}")
        if (self.node.run_kvm / str(vm_id)).exists():
            found.append(f"runtime dir {vm_id}")
        if CpuGroups(Path("/sys/fs/cgroup"), self.node.run_kvm).group(vm_id).exists():
            found.append(f"cpu cgroup of {vm_id}")
        if self.node.overlays.is_dir():
            found += [f"overlay {p.name}" for p in self.node.overlays.glob(f"*-{vm_id}-overlay*")]
        return found


def qemus_of(run_kvm: Path, vm_id: int) -> list[int]:
    """QEMU processes whose command line names this VM's pid file (by /proc)."""
    pidfile = str(run_kvm / str(vm_id) / "qemu.pid").encode()
    found: list[int] = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"-pidfile" in argv and pidfile in argv:
                found.append(int(proc.name))
    return found


@contextlib.contextmanager
def open_kit(request: pytest.FixtureRequest) -> Iterator[KvmKit]:
    if os.geteuid() != 0:
        pytest.fail("the KVM kit needs root (taps, cgroups, QEMU's -runas)")
    with kvm_node_made() as node:
        kit = KvmKit(node=node)
        yield kit
        left = {
            vm: kit.leaks(vm)
            for vm in KvmBackend(node.config(), images=node.tools).list_leftovers()
        }
        assert not left, f"the KVM kit's node kept {left}"
