"""The load balancer: which node starts a VM. One module, used by the API and the L7R.

Candidates are backend hosts that are not blocked, whose HKD says ``running`` and
whose heartbeat (``host_runtimes.ok_ts``) is younger than
``internal.hkd.cluster.node.timeout``. A host that reports less free RAM than the
VM's OSF needs is not a candidate (QVD ignored OSF memory, reference §9.14).

Each candidate gets a score from its live figures, normalised over the candidates
so that the weights mean the same whatever the machine sizes:

    score = w_ram    * (free_ram_mb - osf_memory) / max(free_ram_mb - osf_memory)
          + w_cpu    * ((idle_cpu / max idle_cpu) + (1 - running_vms / (max running_vms + 1))) / 2
          + w_random * uniform(0, 1)

with the weights ``l7r.loadbalancer.plugin.default.weight.{ram,cpu,random}``. A
figure the HKD has not reported yet counts as 0.5 (neither good nor bad). The highest
score wins. No candidate raises :class:`NoHostAvailable` (API status 5140).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from qvd.config import Config
from qvd.db.errors import DatabaseError
from qvd.db.models import Host, HostRuntime, Osf, Vm

__all__ = [
    "HostLoad",
    "NoHostAvailable",
    "Weights",
    "candidates",
    "choose",
    "pick_host",
    "pick_host_for_vm",
]


class NoHostAvailable(DatabaseError):
    """No node can take the VM now (QVD status 5140); the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Weights:
    ram: float = 1.0
    cpu: float = 1.0
    random: float = 1.0
    heartbeat_timeout: float = 25.0

    @classmethod
    def from_config(cls, config: Config) -> Weights:
        prefix = "l7r.loadbalancer.plugin.default.weight."
        return cls(
            ram=config.get_float(prefix + "ram"),
            cpu=config.get_float(prefix + "cpu"),
            random=config.get_float(prefix + "random"),
            heartbeat_timeout=config.get_float("internal.hkd.cluster.node.timeout"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HostLoad:
    """A candidate host and its live figures (None: not reported yet)."""

    host_id: int
    name: str
    free_ram_mb: float | None
    idle_cpu: float | None
    running_vms: int | None


def candidates(
    session: Session, *, heartbeat_timeout: float, now: dt.datetime | None = None
) -> list[HostLoad]:
    """Hosts that may take a VM now (any memory need)."""
    now = now or dt.datetime.now(dt.UTC)
    fresh = now - dt.timedelta(seconds=heartbeat_timeout)
    rows = session.execute(
        select(
            Host.id,
            Host.name,
            HostRuntime.free_ram_mb,
            HostRuntime.idle_cpu,
            HostRuntime.running_vms,
        )
        .join(HostRuntime, HostRuntime.host_id == Host.id)
        .where(
            Host.backend.is_(True),
            HostRuntime.blocked.is_(False),
            HostRuntime.state == "running",
            HostRuntime.ok_ts > fresh,
        )
        .order_by(Host.id)
    )
    return [
        HostLoad(host_id=r[0], name=r[1], free_ram_mb=r[2], idle_cpu=r[3], running_vms=r[4])
        for r in rows
    ]


def _norm(value: float | None, top: float) -> float:
    if value is None:
        return 0.5
    return value / top if top > 0 else 0.0


def choose(
    hosts: Sequence[HostLoad], osf_memory_mb: int, weights: Weights, rng: random.Random
) -> HostLoad:
    """The best of ``hosts`` for a VM needing ``osf_memory_mb`` (pure: no database)."""
    fitting = [h for h in hosts if h.free_ram_mb is None or h.free_ram_mb >= osf_memory_mb]
    if not fitting:
        if not hosts:
            raise NoHostAvailable(
                "no host available: no backend host is running, unblocked and sending "
                "heartbeats (is the HKD running on a node?)"
            )
        best = max(h.free_ram_mb or 0.0 for h in hosts)
        raise NoHostAvailable(
            f"no host available: the VM needs {osf_memory_mb} MB and the most free RAM on a "
            f"running host is {best:.0f} MB"
        )
    spare = [None if h.free_ram_mb is None else h.free_ram_mb - osf_memory_mb for h in fitting]
    top_ram = max((s for s in spare if s is not None), default=0.0)
    top_cpu = max((h.idle_cpu for h in fitting if h.idle_cpu is not None), default=0.0)
    top_vms = max((h.running_vms for h in fitting if h.running_vms is not None), default=0)
    scored: list[tuple[float, int, HostLoad]] = []
    for h, s in zip(fitting, spare, strict=True):
        vms = 0.5 if h.running_vms is None else 1.0 - h.running_vms / (top_vms + 1)
        score = (
            weights.ram * _norm(s, top_ram)
            + weights.cpu * (_norm(h.idle_cpu, top_cpu) + vms) / 2
            + weights.random * rng.random()
        )
        scored.append((score, -h.host_id, h))
    return max(scored, key=lambda t: (t[0], t[1]))[2]


def pick_host(
    session: Session,
    osf_memory_mb: int,
    weights: Weights,
    *,
    rng: random.Random | None = None,
    now: dt.datetime | None = None,
) -> int:
    """The id of the host that should start a VM needing ``osf_memory_mb``."""
    hosts = candidates(session, heartbeat_timeout=weights.heartbeat_timeout, now=now)
    return choose(hosts, osf_memory_mb, weights, rng or random.SystemRandom()).host_id


def pick_host_for_vm(
    session: Session, vm_id: int, weights: Weights, *, rng: random.Random | None = None
) -> int:
    """The host for one VM, from its OSF's memory."""
    memory = session.scalar(select(Osf.memory).join(Vm, Vm.osf_id == Osf.id).where(Vm.id == vm_id))
    if memory is None:
        raise NoHostAvailable(f"no host available: VM {vm_id} does not exist")
    return pick_host(session, memory, weights, rng=rng)
