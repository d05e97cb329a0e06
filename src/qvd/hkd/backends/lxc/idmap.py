"""User-namespace id ranges of the desktops: root in a desktop is an unprivileged host id.

Each VM gets one 65536-id range, ``start + (vm_id mod ranges) * 65536``: cheap (no
per-range copy of a base, see ``mountns``), stable across restarts (a persistent upper
keeps its owners), and shared by two VMs of a node only when their ids differ by a
multiple of ``ranges`` (``ranges = 1`` is one range per node).

When ``newuidmap`` is installed, LXC uses it even when root starts the container, and it
refuses any range that is not in ``/etc/subuid`` and ``/etc/subgid`` for root: the
backend adds the block there at start, once.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RANGE_SIZE", "IdPlan", "IdRange", "ensure_subordinate_ids"]

RANGE_SIZE = 65536
_LAST_ID = 2**32 - 2  # (uid_t) -1 is "no id"


@dataclass(frozen=True, slots=True)
class IdRange:
    """Container ids 0..count-1 are host ids start..start+count-1."""

    start: int
    count: int = RANGE_SIZE

    def host(self, container_id: int) -> int:
        return self.start + container_id


@dataclass(frozen=True, slots=True)
class IdPlan:
    """The node's block of ids: ``ranges`` ranges from ``start``."""

    start: int
    ranges: int

    def __post_init__(self) -> None:
        if self.start < RANGE_SIZE:
            raise ValueError(
                f"vm.lxc.idmap.start = {self.start}: must be at least {RANGE_SIZE} "
                "(never the node's own system and user ids)"
            )
        if self.ranges < 1:
            raise ValueError(f"vm.lxc.idmap.ranges = {self.ranges}: must be at least 1")
        if self.start + self.ranges * RANGE_SIZE - 1 > _LAST_ID:
            raise ValueError(
                f"vm.lxc.idmap.start + ranges * {RANGE_SIZE} passes the last uid {_LAST_ID}"
            )

    @property
    def count(self) -> int:
        return self.ranges * RANGE_SIZE

    def for_vm(self, vm_id: int) -> IdRange:
        return IdRange(self.start + (vm_id % self.ranges) * RANGE_SIZE)


def _covered(text: str, user: str, start: int, count: int) -> bool:
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, "0"):
            continue
        try:
            first, size = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if first <= start and start + count <= first + size:
            return True
    return False


def ensure_subordinate_ids(
    plan: IdPlan,
    files: tuple[Path, ...] = (Path("/etc/subuid"), Path("/etc/subgid")),
    *,
    newuidmap: bool | None = None,
) -> list[Path]:
    """Give root the plan's block in /etc/subuid and /etc/subgid when newuidmap exists
    (``newuidmap``: whether it does, None to look on PATH); idempotent. Returns the
    files changed."""
    if newuidmap is None:
        newuidmap = shutil.which("newuidmap") is not None
    if not newuidmap:
        return []
    changed: list[Path] = []
    for path in files:
        text = path.read_text() if path.exists() else ""
        if _covered(text, "root", plan.start, plan.count):
            continue
        prefix = "" if not text or text.endswith("\n") else "\n"
        with path.open("a") as f:
            f.write(f"{prefix}root:{plan.start}:{plan.count}\n")
        changed.append(path)
    return changed
