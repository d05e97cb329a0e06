"""The fencing lease: a small file in ``path.run`` that says until when this node's
VMs may run (on ``CLOCK_BOOTTIME``, which counts suspended time too and is shared by
every process of the machine).

The HKD renews it each time it proves its heartbeat (or finds the database down for
everyone); the watchdog (``qvd.hkd.watchdog``) kills the node's VMs once it expires,
whether the HKD is alive, hung or dead. ``released`` means the HKD stopped cleanly
and recorded it: peers never release the VMs of a stopped node, so nothing has to die.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Lease", "LeaseFile", "boot_clock"]


def boot_clock() -> float:
    """Seconds on CLOCK_BOOTTIME: monotonic, system-wide, counting suspend."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    deadline: float  # boot_clock() value after which the VMs must be dead
    holder: int  # PID of the HKD that wrote it
    released: bool = False

    def expired(self, now: float) -> bool:
        return not self.released and now >= self.deadline


class LeaseFile:
    """Atomic writes (temp file + rename) and tolerant reads of one lease file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, lease: Lease) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        data = {"deadline": lease.deadline, "holder": lease.holder, "released": lease.released}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)

    def read(self) -> Lease | None:
        """The lease, or None if there is none (or it cannot be read: treat as expired)."""
        try:
            data = json.loads(self.path.read_text())
            return Lease(
                deadline=float(data["deadline"]),
                holder=int(data["holder"]),
                released=bool(data.get("released", False)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
