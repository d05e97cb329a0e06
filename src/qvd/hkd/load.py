"""Live load figures of this node for the load balancer: free RAM and idle CPU."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSampler", "LoadFigures", "read_meminfo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadFigures:
    usable_ram_mb: float  # total memory
    usable_cpu: float  # CPU count
    free_ram_mb: float  # MemAvailable
    idle_cpu: float  # idle fraction since the last sample times the CPU count


def read_meminfo(path: Path = Path("/proc/meminfo")) -> tuple[float, float]:
    """(MemTotal, MemAvailable) in MB."""
    fields: dict[str, float] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            fields[key] = float(parts[0]) / 1024
    return fields.get("MemTotal", 0.0), fields.get("MemAvailable", fields.get("MemFree", 0.0))


class CpuSampler:
    """Idle CPU between two reads of /proc/stat."""

    def __init__(self, path: Path = Path("/proc/stat")) -> None:
        self._path = path
        self._last = self._read()
        self._last_time = time.monotonic()

    def _read(self) -> tuple[float, float]:
        first = self._path.read_text().splitlines()[0].split()[1:]
        values = [float(v) for v in first]
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)
        return idle, sum(values)

    def sample(self) -> LoadFigures:
        idle, total = self._read()
        d_idle, d_total = idle - self._last[0], total - self._last[1]
        self._last = (idle, total)
        cpus = float(os.cpu_count() or 1)
        fraction = d_idle / d_total if d_total > 0 else 1.0
        mem_total, mem_free = read_meminfo()
        return LoadFigures(
            usable_ram_mb=mem_total,
            usable_cpu=cpus,
            free_ram_mb=mem_free,
            idle_cpu=round(fraction * cpus, 3),
        )
