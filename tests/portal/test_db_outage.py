"""The database goes away under a running portal: pages, the JSON API, logins and the
socket answer 503 (or 4503) saying the database is unavailable, never a 500. A real
throwaway cluster, stopped by the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.db import EmbeddedCluster, make_engine, upgrade
from qvd.l7r import L7rServer
from qvd.portal import PortalServer
from tests.conftest import throwaway_cluster
from tests.l7r.conftest import FakeAgent, NxAgentStandIn, l7r_config, seed
from tests.portal.conftest import PortalLab

pytestmark = pytest.mark.slow


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[PortalLab, EmbeddedCluster]]:
    with throwaway_cluster("qvd-test-pg-portal-outage-") as cluster:
        target = cluster.target()
        engine = make_engine(target)
        server: L7rServer | None = None
        nx = NxAgentStandIn()
        lab: PortalLab | None = None
        try:
            upgrade(engine)
            seeded = seed(engine)
            config = l7r_config(
                tmp_path / "run",
                **{
                    "l7r.portal.address": "127.0.0.1",
                    "l7r.portal.port": "0",
                    "database.failover_wait": "1",  # the 503 after this wait for a primary
                },
            )
            server = L7rServer(config, target, seeded.host_id, "127.0.0.1", attach=[PortalServer])
            server.start()
            portal = server.attached[0]
            assert isinstance(portal, PortalServer)
            lab = PortalLab(
                server=server, portal=portal, seed=seeded, engine=engine,
                agent=FakeAgent(port=nx.port), vma_port=0, nx=nx,
            )  # fmt: skip
            yield lab, cluster
        finally:
            for browser in lab.browsers if lab else ():
                browser.client.close()
            if server is not None:
                server.stop()
            engine.dispose()
            nx.close()


def test_the_portal_says_503_while_the_database_is_down(
    outage: tuple[PortalLab, EmbeddedCluster],
) -> None:
    lab, cluster = outage
    browser = lab.browser()
    assert browser.log_in().status_code == 303
    assert browser.get("/api/desktops").status_code == 200
    cluster.stop()
    for response in (
        browser.get("/"),
        browser.get("/api/desktops"),
        browser.post("/login", {"login": "alice", "password": "secret"}),
        browser.act(lab.seed.vm_id, "start"),
    ):
        where = f"{response.request.method} {response.request.url.path}"
        assert response.status_code == 503, (where, response.text)
        assert "database" in response.text, (where, response.text)
    socket_outcome = browser.ws(f"/ws/desktops/{lab.seed.vm_id}")
    assert socket_outcome.close_code == 4503, socket_outcome
    assert "database" in socket_outcome.errors[0]
