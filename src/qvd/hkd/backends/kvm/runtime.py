"""A VM's runtime directory and the QEMU process it names.

``<path.run.kvm>/<vm_id>/`` (0700 root) holds ``qmp.sock``, ``qemu.pid``,
``identity.json`` (0600: the VMA secret; removed once QEMU has read it),
``qemu.log`` (QEMU's own messages) and ``vm.json`` (what cleanup must know: the
overlay and whether it persists). A QEMU
counts as this VM's only when the PID in the pid file is alive, not a zombie, and its
command line names this very pid file: a PID reused by another process, or another
node's QEMU of the same VM id on this machine, is never taken for ours.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from qvd.hkd.backends.hostfs import private_dir

__all__ = ["Runtime", "VmRecord", "qemu_pid_of"]

_LOG_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class VmRecord:
    """What ``prepare`` decided, for ``cleanup`` after an HKD restart."""

    overlay: str  # file name under path.storage.overlays
    overlay_persistent: bool

    def to_json(self) -> bytes:
        return json.dumps({"overlay": self.overlay, "persistent": self.overlay_persistent}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> VmRecord | None:
        try:
            raw = json.loads(data)
            overlay, persistent = raw["overlay"], raw["persistent"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(overlay, str) or "/" in overlay or not isinstance(persistent, bool):
            return None
        return cls(overlay=overlay, overlay_persistent=persistent)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [word.decode(errors="replace") for word in raw.split(b"\0")[:-1]]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def qemu_pid_of(pidfile: Path) -> int | None:
    """The PID of the live QEMU started with ``-pidfile pidfile``; None otherwise."""
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) <= 1:
        return None
    pid = int(text)
    argv = _cmdline(pid)
    if not argv or _zombie(pid):
        return None
    for i, word in enumerate(argv[:-1]):
        if word == "-pidfile" and argv[i + 1] == str(pidfile):
            return pid
    return None


@dataclass(frozen=True, slots=True)
class Runtime:
    """The runtime directories under ``root`` (one per VM id)."""

    root: Path

    def dir(self, vm_id: int) -> Path:
        return self.root / str(vm_id)

    def qmp(self, vm_id: int) -> Path:
        return self.dir(vm_id) / "qmp.sock"

    def pidfile(self, vm_id: int) -> Path:
        return self.dir(vm_id) / "qemu.pid"

    def identity(self, vm_id: int) -> Path:
        return self.dir(vm_id) / "identity.json"

    def log(self, vm_id: int) -> Path:
        return self.dir(vm_id) / "qemu.log"

    def record_path(self, vm_id: int) -> Path:
        return self.dir(vm_id) / "vm.json"

    def ensure(self, vm_id: int) -> Path:
        private_dir(self.root)
        private_dir(self.dir(vm_id))
        return self.dir(vm_id)

    def record(self, vm_id: int) -> VmRecord | None:
        try:
            return VmRecord.from_json(self.record_path(vm_id).read_bytes())
        except OSError:
            return None

    def pid(self, vm_id: int) -> int | None:
        return qemu_pid_of(self.pidfile(vm_id))

    def vm_ids(self) -> set[int]:
        if not self.root.is_dir():
            return set()
        return {int(p.name) for p in self.root.iterdir() if p.name.isdigit()}

    def log_tail(self, vm_id: int, lines: int = 3) -> str:
        try:
            with open(self.log(vm_id), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - _LOG_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def remove(self, vm_id: int) -> None:
        shutil.rmtree(self.dir(vm_id), ignore_errors=True)
