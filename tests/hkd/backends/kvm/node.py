"""A throwaway KVM node for tests: its own storage and runtime roots, a bridge of its
own (no address: nothing is routed through it), a unique host-device prefix, the stub
guest's image tools, and a check that nothing of its VMs is left."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qvd.config import Config
from qvd.hkd.backends.base import HomeSpec, NetworkSpec, VmSpec
from qvd.hkd.backends.kvm import KvmBackend
from qvd.hkd.backends.kvm.cgroup import CpuGroups
from qvd.hkd.backends.kvm.runtime import qemu_pid_of
from qvd.hkd.backends.kvm.tap import list_taps
from tests.conftest import scratch_dir
from tests.hkd.backends.kvm.stubguest import StubImageTools, make_stub_di

__all__ = ["KvmNode", "kvm_node_made"]

DI_ID = 7


@dataclass
class KvmNode:
    root: Path
    bridge: str
    prefix: str  # host devices are <prefix><vm_id>
    tools: StubImageTools
    image: Path
    extra: dict[str, str] = field(default_factory=dict)

    def config(self, **extra: str) -> Config:
        values = {
            "nodename": "kvmnode",
            "vm.hypervisor": "kvm",
            "vm.kvm.accel": "tcg",
            "path.run": str(self.root / "run"),
            "path.storage.root": str(self.root / "storage"),
            "internal.vm.network.device.prefix": self.prefix,
            **self.extra,
            **extra,
        }
        return Config().with_overrides(values, source="test")

    def backend(self, **extra: str) -> KvmBackend:
        return KvmBackend(self.config(**extra), images=self.tools)

    def spec(
        self,
        vm_id: int,
        *,
        home_mib: int | None = 16,
        persistent: bool = False,
        name: str | None = None,
        secret: str | None = None,
        weight: int = 100,
    ) -> VmSpec:
        last = vm_id % 200 + 20
        return VmSpec(
            vm_id=vm_id,
            name=name or f"vm{vm_id}",
            di_id=DI_ID,
            image=self.image,
            memory_mib=64,
            vcpus=1,
            cpu_weight=weight,
            network=NetworkSpec(
                bridge=self.bridge,
                address=f"10.214.1.{last}",
                prefix=24,
                mac=f"54:52:00:d6:01:{last:02x}",
                host_device=f"{self.prefix}{vm_id}",
            ),
            vma_secret=secret or secrets.token_hex(32),
            home=HomeSpec(login="alice", size_mib=home_mib) if home_mib else None,
            overlay_persistent=persistent,
        )

    @property
    def run_kvm(self) -> Path:
        return self.root / "run" / "kvm"

    @property
    def overlays(self) -> Path:
        return self.root / "storage" / "overlays"

    @property
    def homes(self) -> Path:
        return self.root / "storage" / "homes"

    def qemu_pids(self) -> dict[int, int]:
        """vm_id -> PID of every live QEMU of this node (found by its pid file)."""
        found: dict[int, int] = {}
        if self.run_kvm.is_dir():
            for entry in self.run_kvm.iterdir():
                pid = qemu_pid_of(entry / "qemu.pid")
                if pid is not None and entry.name.isdigit():
                    found[int(entry.name)] = pid
        return found

    def leaks(self) -> list[str]:
        """What this node's VMs left: QEMUs, taps, runtime dirs, cpu groups."""
        left = [f"qemu {pid} of VM {vm}" for vm, pid in self.qemu_pids().items()]
        left += [f"tap {dev}" for dev in list_taps(self.prefix).values()]
        if self.run_kvm.is_dir():
            left += [f"runtime dir {p.name}" for p in self.run_kvm.iterdir()]
        groups = CpuGroups(Path("/sys/fs/cgroup"), self.run_kvm)
        left += [f"cpu group {vm}" for vm in groups.vm_ids()]
        return left

    def tear_down(self) -> None:
        """Kill and clean every VM of the node (by its PID), then its files."""
        probe = KvmBackend(self.config(), images=self.tools)
        for vm_id in probe.runtime.vm_ids() | set(list_taps(self.prefix)):
            with contextlib.suppress(Exception):
                probe.kill(vm_id)
            with contextlib.suppress(Exception):
                probe.cleanup(vm_id)
        for pid in self.qemu_pids().values():  # last resort, by the PID of our QEMU
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        with contextlib.suppress(Exception):
            probe.groups.parent.rmdir()


@contextlib.contextmanager
def kvm_node_made() -> Iterator[KvmNode]:
    tag = secrets.token_hex(2)
    root = scratch_dir("qvd-test-kvm-")
    bridge = f"qkbr{tag}"
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    node = KvmNode(
        root=root,
        bridge=bridge,
        prefix=f"qk{tag}",
        tools=StubImageTools.made_in(root / "boot"),
        image=make_stub_di(root / "storage" / "images" / f"{DI_ID}-stub.qcow2"),
    )
    try:
        yield node
    finally:
        try:
            node.tear_down()
        finally:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
            shutil.rmtree(root, ignore_errors=True)
