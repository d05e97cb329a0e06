"""The database goes away under a running L7R: every endpoint answers 503 with a
``text/plain`` reason (QVD's clients show "under maintenance"), never a 500, and it
serves again once the database is back. A real throwaway cluster, stopped by the test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qvd.db import EmbeddedCluster, make_engine, upgrade
from qvd.l7r import L7rServer
from tests.conftest import throwaway_cluster
from tests.l7r.conftest import PASSWORD, FakeAgent, Lab, NxAgentStandIn, l7r_config, seed
from tests.l7r.ldap_fixture import Reply, basic, bearer, get

pytestmark = pytest.mark.slow


@dataclass
class Outage:
    lab: Lab
    cluster: EmbeddedCluster


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    """An L7R over a cluster of its own (the test may stop it); all removed at the end."""
    with throwaway_cluster("qvd-test-pg-outage-") as cluster:
        target = cluster.target()
        engine = make_engine(target)
        server: L7rServer | None = None
        nx = NxAgentStandIn()
        try:
            upgrade(engine)
            seeded = seed(engine)
            # a connect's steps wait this long for a primary before the 503 (a failover)
            config = l7r_config(tmp_path / "run", **{"database.failover_wait": "1"})
            server = L7rServer(config, target, seeded.host_id, "127.0.0.1")
            server.start()
            agent = FakeAgent(port=nx.port)
            lab = Lab(server=server, seed=seeded, engine=engine, agent=agent, nx=nx)
            yield Outage(lab=lab, cluster=cluster)
        finally:
            if server is not None:
                server.stop()
            engine.dispose()
            nx.close()


def assert_maintenance(reply: Reply, what: str) -> None:
    assert reply.status == 503, f"{what}: {reply.head!r} {reply.body!r}"
    assert (reply.header("Content-Type") or "").startswith("text/plain"), what
    text = reply.body.decode()
    assert "under maintenance" in text, f"{what}: {text!r}"
    assert "database" in text, f"{what}: {text!r}"


def test_every_endpoint_says_503_while_the_database_is_down(outage: Outage) -> None:
    lab = outage.lab
    alice = basic("alice", PASSWORD)
    listed = get(lab, "/qvd/list_of_vm", alice)
    assert listed.status == 200, listed
    made = get(lab, "/qvd/create_auth_token", alice)
    assert made.status == 200, made
    token = str(json.loads(made.body)["auth_token"])
    vm = lab.seed.vm_id

    outage.cluster.stop()
    assert_maintenance(get(lab, "/qvd/ping"), "ping")
    assert_maintenance(get(lab, "/qvd/list_of_vm", alice), "list_of_vm")
    assert_maintenance(get(lab, "/qvd/list_of_applications", alice), "list_of_applications")
    assert_maintenance(get(lab, "/qvd/list_of_vm", bearer(token)), "list_of_vm with a token")
    assert_maintenance(get(lab, "/qvd/create_auth_token", alice), "create_auth_token")
    assert_maintenance(get(lab, "/qvd/authenticate_user", alice), "authenticate_user")
    assert_maintenance(
        get(lab, f"/qvd/connect_to_vm?id={vm}", alice, upgrade=True), "connect_to_vm"
    )
    assert_maintenance(get(lab, f"/qvd/stop_vm?id={vm}", alice, upgrade=True), "stop_vm")
    # a bad password is still a 401 only if the database can say so: it cannot
    assert_maintenance(get(lab, "/qvd/list_of_vm", basic("alice", "wrong")), "bad password")

    outage.cluster.start()
    again = get(lab, "/qvd/list_of_vm", alice)
    assert again.status == 200, again
    assert [row["id"] for row in json.loads(again.body)] == [vm]
