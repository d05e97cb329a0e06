"""A node's ``/metrics``: the HKD (fake backend, in this process) hosting the real L7R
and the node's TLS metrics listener, composed as ``qvd hkd`` composes them
(``qvd.node.daemons.node_services``), over a real PostgreSQL; scraped over TLS with the
node's token and parsed with prometheus_client's parser."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from qvd.config import Config
from qvd.db import DatabaseTarget, EmbeddedCluster, make_engine, upgrade
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd
from qvd.hkd.fencing import FenceClock, Fencer
from qvd.hkd.metrics import VM_STATES, HkdMetrics
from qvd.node.daemons import node_services
from tests.conftest import free_port, throwaway_cluster
from tests.hkd.conftest import (
    FakeVma,
    add_host,
    add_vm,
    command,
    frozen,
    hkd_config,
    host_state,
    state_of,
    wait_for,
)
from tests.hkd.scrape import scrape

TOKEN = secrets.token_urlsafe(24)


def metrics_config(run_dir: Path, nodename: str = "node1", **extra: str) -> Config:
    """A node with its L7R on loopback and its /metrics on a free port, token set."""
    return hkd_config(
        run_dir, nodename,
        **{"l7r.address": "127.0.0.1", "l7r.port": "0", "l7r.portal.enable": "0",
           "metrics.port": str(free_port()), "metrics.token": TOKEN, **extra},
    )  # fmt: skip


def node_with_metrics(config: Config, db: DatabaseTarget, vma: FakeVma) -> Hkd:
    metrics = HkdMetrics()
    return Hkd(
        config, backend=FakeBackend(), vma=vma, target=db,
        services=node_services(config, db, metrics=metrics), metrics=metrics,
    )  # fmt: skip


def unlabelled(metrics: HkdMetrics) -> dict[str, float]:
    """The samples without labels of the HKD's registry, from its text exposition."""
    text = generate_latest(metrics.registry).decode()
    return {
        s.name: float(s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if not s.labels
    }


def test_a_started_and_stopped_vm_shows_in_the_nodes_metrics(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    host = add_host(engine)
    vma = FakeVma()
    config = metrics_config(run_dir)
    hkd = node_with_metrics(config, db, vma)
    hkd.start()
    started.append(hkd)
    port = config.get_int("metrics.port")

    first = scrape(port, TOKEN)
    assert first.status == 200
    assert first.headers["content-type"].startswith("text/plain; version=0.0.4")
    # one registry: the HKD's and the L7R's families side by side
    assert {"qvd_node_vms", "qvd_node_claims", "qvd_l7r_connects", "qvd_l7r_sessions"} <= (
        first.families()
    )
    assert first.value("qvd_node_vm_start_seconds_count") == 0
    assert first.value("qvd_l7r_sessions") == 0

    vm_id, ip = add_vm(engine)
    vma.alive.add(ip)
    command(engine, vm_id, "start", host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", 10, "running")
    wait_for(lambda: scrape(port, TOKEN).value("qvd_node_vms", state="running") == 1, 10, "seen")
    running = scrape(port, TOKEN)
    assert running.value("qvd_node_vm_start_seconds_count") == 1
    assert running.value("qvd_node_vm_start_seconds_sum") > 0
    assert running.value("qvd_node_vm_backend_start_seconds_count") == 1
    assert running.value("qvd_node_claims_total", kind="start", result="won") == 1
    assert running.value("qvd_node_vms", state="starting") == 0

    command(engine, vm_id, "stop")
    wait_for(lambda: state_of(engine, vm_id) == "stopped", 10, "stopped")
    # released: no longer this node's VM in any state
    wait_for(
        lambda: sum(scrape(port, TOKEN).value("qvd_node_vms", state=s) for s in VM_STATES) == 0,
        10,
        "the VM no longer this node's",
    )
    stopped = scrape(port, TOKEN)
    assert stopped.value("qvd_node_vm_stop_seconds_count") == 1
    assert stopped.value("qvd_node_claims_total", kind="stop", result="won") == 1
    assert stopped.value("qvd_node_fencing_events_total") == 0
    assert stopped.value("qvd_node_fenced") == 0
    hkd.stop()
    assert host_state(engine, host.id) == "stopped"


def test_a_peer_marked_lost_is_counted(
    db: DatabaseTarget, engine: Engine, run_dir: Path, started: list[Hkd]
) -> None:
    host_a = add_host(engine, "node-a", "10.231.0.2")
    add_host(engine, "node-b", "10.231.0.3")
    vma = FakeVma()
    node_a = Hkd(hkd_config(run_dir, "node-a"), backend=FakeBackend(), vma=vma, target=db)
    node_b = Hkd(hkd_config(run_dir, "node-b"), backend=FakeBackend(), vma=vma, target=db)
    node_a.start()
    node_b.start()
    started.extend([node_a, node_b])
    assert unlabelled(node_b.metrics)["qvd_node_lost_peers_total"] == 0
    node_a.halt()  # its heartbeat stops
    wait_for(lambda: host_state(engine, host_a.id) == "lost", 15, "A marked lost")
    assert unlabelled(node_b.metrics)["qvd_node_lost_peers_total"] == 1


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedCluster]:
    with throwaway_cluster("qvd-test-pg-metrics-") as cluster:
        yield cluster


def test_a_fenced_node_says_so_and_answers_without_its_database(
    own_cluster: EmbeddedCluster, run_dir: Path, started: list[Hkd]
) -> None:
    """The database hangs (SIGSTOP): the node fences itself; a scrape meanwhile still
    answers (the node's view is in memory) and shows the fence."""
    target = own_cluster.target()
    engine = make_engine(target)
    try:
        upgrade(engine)
        add_host(engine)
    finally:
        engine.dispose()
    config = metrics_config(run_dir)
    hkd = node_with_metrics(config, target, FakeVma())
    hkd.start()
    started.append(hkd)
    port = config.get_int("metrics.port")
    assert scrape(port, TOKEN).value("qvd_node_fencing_events_total") == 0
    with frozen(own_cluster):
        wait_for(lambda: hkd.fenced, 15, "the node fenced")
        during = scrape(port, TOKEN)
        assert during.value("qvd_node_fenced") == 1
        assert during.value("qvd_node_fencing_events_total") == 1
    wait_for(lambda: not hkd.fenced, 30, "the heartbeat back")
    after = scrape(port, TOKEN)
    assert after.value("qvd_node_fenced") == 0
    assert after.value("qvd_node_fencing_events_total") == 1


def test_fencing_figures_are_read_from_the_fencer() -> None:
    """The real fence timer past its deadline (no database at all): one event."""
    metrics = HkdMetrics()
    clock = FenceClock(1.0, anchor=time.monotonic() - 10, clock=time.monotonic)
    fencer = Fencer(clock, lambda: [])
    metrics.watch_fencing(lambda: (fencer.fence_count, fencer.fenced))
    assert metrics.fencing() == (0, False)
    fencer.tick()
    fencer.tick()  # still fenced: the same event
    values = unlabelled(metrics)
    assert values["qvd_node_fencing_events_total"] == 1
    assert values["qvd_node_fenced"] == 1


def test_timers_and_claims_follow_the_reconcilers_calls() -> None:
    """The bookkeeping behind the one-line hooks, on a clock the test moves."""
    now = [100.0]
    metrics = HkdMetrics(clock=lambda: now[0])
    metrics.claimed("start", 7, True, "stopped")
    now[0] += 2.5
    metrics.vm_running(7)
    metrics.vm_running(7)  # a second answer is no second start
    metrics.claimed("stop", 7, False, "stopping")  # waits for the stop under way: no contest
    metrics.claimed("stop", 7, False, "running")  # another node or a change was first
    metrics.claimed("stop", 7, True, "running")
    now[0] += 1.0
    metrics.stop_began(7)  # the stopping step: the claim's moment counts
    now[0] += 0.5
    metrics.vm_released(7)
    metrics.vm_released(7)
    values = unlabelled(metrics)
    assert values["qvd_node_vm_start_seconds_count"] == 1
    assert values["qvd_node_vm_start_seconds_sum"] == 2.5
    assert values["qvd_node_vm_stop_seconds_count"] == 1
    assert values["qvd_node_vm_stop_seconds_sum"] == 1.5
    text = generate_latest(metrics.registry).decode()
    claims = {
        (s.labels["kind"], s.labels["result"]): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "qvd_node_claims_total"
    }
    assert claims[("start", "won")] == 1
    assert claims[("stop", "won")] == 1
    assert claims[("stop", "lost")] == 1
