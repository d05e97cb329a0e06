"""A cgroup v1 ``cpu`` group per QEMU, for the VM's CPU weight.

Groups are ``<path.cgroup>/cpu/<node group>/<vm_id>``, the node group named after the
backend's runtime root so that two nodes on one machine never share one. The weight
(1..10000, 100 = normal) becomes ``cpu.shares = weight * 1024 / 100``.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from qvd.hkd.backends.base import BackendError

__all__ = ["CpuGroups", "shares_for"]


def shares_for(weight: int) -> int:
    return max(2, weight * 1024 // 100)


class CpuGroups:
    def __init__(self, cgroup_root: Path, runtime_root: Path) -> None:
        tag = hashlib.sha256(str(runtime_root).encode()).hexdigest()[:12]
        self.controller = cgroup_root / "cpu"
        self.parent = self.controller / f"qvd-kvm-{tag}"

    @property
    def available(self) -> bool:
        return (self.controller / "cpu.shares").exists()

    def group(self, vm_id: int) -> Path:
        return self.parent / str(vm_id)

    def place(self, vm_id: int, pid: int, weight: int) -> None:
        """Put process ``pid`` (all its threads) in the VM's group of ``weight``."""
        if not self.available:
            return
        group = self.group(vm_id)
        try:
            group.mkdir(parents=True, exist_ok=True)
            (group / "cpu.shares").write_text(f"{shares_for(weight)}\n")
            (group / "cgroup.procs").write_text(f"{pid}\n")
        except OSError as exc:
            raise BackendError(f"cpu cgroup {group}: {exc.strerror or exc}") from None

    def shares(self, vm_id: int) -> int | None:
        try:
            return int((self.group(vm_id) / "cpu.shares").read_text())
        except (OSError, ValueError):
            return None

    def pids(self, vm_id: int) -> list[int]:
        try:
            text = (self.group(vm_id) / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def vm_ids(self) -> set[int]:
        if not self.parent.is_dir():
            return set()
        return {int(p.name) for p in self.parent.iterdir() if p.is_dir() and p.name.isdigit()}

    def remove(self, vm_id: int) -> None:
        group = self.group(vm_id)
        try:
            group.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BackendError(f"cannot remove cpu cgroup {group}: {exc.strerror}") from None
        if not self.vm_ids():
            with contextlib.suppress(OSError):
                self.parent.rmdir()
