"""The shared load balancer (``qvd.db.loadbalancer``): who is a candidate, and how
live figures, OSF memory and the weights pick one."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from qvd.config import Config
from qvd.db.loadbalancer import HostLoad, NoHostAvailable, Weights, candidates, choose, pick_host
from qvd.db.models import Host, HostRuntime
from tests.api.conftest import add_running_host

NO_JITTER = Weights(ram=1, cpu=1, random=0)


def h(host_id: int, ram: float | None, cpu: float | None = 0.5, vms: int | None = 0) -> HostLoad:
    return HostLoad(
        host_id=host_id, name=f"n{host_id}", free_ram_mb=ram, idle_cpu=cpu, running_vms=vms
    )


def test_more_free_ram_wins() -> None:
    assert choose([h(1, 1000), h(2, 4000)], 256, NO_JITTER, random.Random(1)).host_id == 2


def test_osf_memory_excludes_small_hosts() -> None:
    assert choose([h(1, 200), h(2, 300, cpu=0.1)], 256, NO_JITTER, random.Random(1)).host_id == 2
    with pytest.raises(NoHostAvailable, match=r"needs 512 MB and the most free RAM .* 300 MB"):
        choose([h(1, 200), h(2, 300)], 512, NO_JITTER, random.Random(1))


def test_idle_cpu_and_fewer_vms_break_ram_ties() -> None:
    hosts = [h(1, 4000, cpu=0.2, vms=5), h(2, 4000, cpu=0.9, vms=1)]
    assert choose(hosts, 256, NO_JITTER, random.Random(1)).host_id == 2


def test_jitter_spreads_equal_hosts() -> None:
    hosts = [h(1, 4000), h(2, 4000)]
    rng = random.Random(7)
    picks = {choose(hosts, 256, Weights(random=1), rng).host_id for _ in range(50)}
    assert picks == {1, 2}


def test_no_candidate_says_why() -> None:
    with pytest.raises(NoHostAvailable, match="no backend host is running"):
        choose([], 256, NO_JITTER, random.Random(1))


def test_weights_come_from_config() -> None:
    config = Config().with_overrides(
        {
            "l7r.loadbalancer.plugin.default.weight.ram": "3",
            "internal.hkd.cluster.node.timeout": "9",
        }
    )
    w = Weights.from_config(config)
    assert (w.ram, w.cpu, w.random, w.heartbeat_timeout) == (3.0, 1.0, 1.0, 9.0)


def test_candidates_are_running_unblocked_backends_with_fresh_heartbeats(session: Session) -> None:
    good = add_running_host(session, "good")
    blocked = add_running_host(session, "blockd")
    stale = add_running_host(session, "stale1")
    frontend_only = add_running_host(session, "front1")
    stopped = add_running_host(session, "stopd1")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
    session.execute(update(HostRuntime).where(HostRuntime.host_id == blocked).values(blocked=True))
    session.execute(update(HostRuntime).where(HostRuntime.host_id == stale).values(ok_ts=old))
    session.execute(
        update(HostRuntime).where(HostRuntime.host_id == stopped).values(state="stopped")
    )
    session.execute(update(Host).where(Host.id == frontend_only).values(backend=False))
    found = candidates(session, heartbeat_timeout=25)
    assert [c.host_id for c in found] == [good]
    assert pick_host(session, 256, NO_JITTER) == good
