"""Attack test: a tenant administrator types another tenant's OSF or property id (or a
node's) into the WAT's URLs: pages, edit forms, delete buttons and the properties
block. Against the real API and PostgreSQL (in-process ASGI): nothing of tenant B is
shown and nothing of it changes; the answer is 404 (not yours) or 403 (nodes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qvd.db import make_engine
from qvd.db.models import HostRuntime, Osf, PropertyDefinition
from tests.wat.conftest import Wat
from tests.wat.conftest import wat as wat


def test_tenant_a_cannot_read_or_change_tenant_bs_objects_by_url(wat: Wat, db: Any) -> None:
    csrf = wat.login("adminA", "tenantA")
    osf, prop, host = wat.world.osfs["B"], wat.world.props["B"], wat.world.host
    reads = {f"/osfs/{osf}": 404, f"/properties/{prop}": 404, f"/hosts/{host}": 403}
    for path, status in reads.items():
        r = wat.client.get(path)
        assert r.status_code == status, path
        for secret in ("osfB", "propB", "node1.nodes.test", "tenantB"):
            assert secret not in r.text, (path, secret)
    writes = {
        f"/osfs/{osf}": {"name": "taken", "memory": "1"},
        f"/osfs/{osf}/delete": {},
        f"/osfs/{osf}/properties": {"key": "propB", "value": "x"},
        f"/osfs/{osf}/properties/delete": {"key": "propB"},
        f"/properties/{prop}": {"key": "taken", "objects": ["vm"]},
        f"/properties/{prop}/delete": {},
        f"/hosts/{host}": {"name": "taken", "address": "10.0.0.1"},
        f"/hosts/{host}/block": {},
        f"/hosts/{host}/delete": {},
    }
    for path, data in writes.items():
        r = wat.client.post(path, data={"csrf": csrf, **data})
        assert r.status_code in (403, 404), (path, r.status_code)
    engine = make_engine(db)
    try:
        with Session(engine) as s:
            assert s.scalar(select(Osf.name).where(Osf.id == osf)) == "osfB"
            assert s.scalar(select(Osf.memory).where(Osf.id == osf)) == 256
            key = s.scalar(select(PropertyDefinition.key).where(PropertyDefinition.id == prop))
            assert key == "propB"
            assert s.scalar(select(HostRuntime.blocked).where(HostRuntime.host_id == host)) is False
    finally:
        engine.dispose()
