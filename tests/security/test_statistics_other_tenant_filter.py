"""Reading another tenant's counts through the statistics' tenant filter: a tenant
administrator who sends ``{"tenant_id": <other>}`` to ``qvd_objects_statistics`` (by
``POST /api`` or ``/api/ws``, against the real server) gets a refusal and no numbers,
never the other tenant's counts. Fails if the filter is honoured for them."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests.api.conftest import api_engine, world
from tests.api.faces.test_ws import Closed, Server, server

__all__ = ["api_engine", "server", "world"]


def test_a_tenant_admin_cannot_read_another_tenants_counts(server: Server) -> None:
    world = server.world
    with server.engine.begin() as conn:  # tenant B has a blocked user, A has none
        conn.execute(text("UPDATE users SET blocked = true WHERE id = :u"), {"u": world.users["B"]})
    sid = server.admin("A")
    other = {"tenant_id": world.tenants["B"]}
    r = server.api.act("qvd_objects_statistics", sid=sid, filters=other)
    assert r["status"] == 4220, r
    assert "blocked_users_count" not in json.dumps(r)

    sock = server.connect(sid, query={"action": "qvd_objects_statistics", "filters": other})
    body = sock.recv_json()
    assert body["status"] == 4220, body
    assert body["rows"] == []
    assert "blocked_users_count" not in body
    with pytest.raises(Closed):
        sock.recv()
    assert sock.close_code in (4400, 4403)
