"""Reading another tenant's session history: tenant A's administrator wants to know
who of tenant B connected when, and from where. Every way in stays inside A's rows:
``session_get_list`` with B's user, VM or login as filters, the REST page, the CSV
export with the same filters; a tenant filter is refused outright; rows of logins that
named no known tenant belong to the superadmins.

Guard: ``qvd.api.services.sessions._scope`` (the list's tenant scope, applied by the
CSV export too since it pages through the same action)."""

from __future__ import annotations

import csv
import io
import json

from sqlalchemy import Engine

from tests.api.conftest import Api, World
from tests.api.conftest import api as api
from tests.api.conftest import api_engine as api_engine
from tests.api.conftest import config as config
from tests.api.conftest import world as world
from tests.api.test_sessions_history import add_row


def _seed(engine: Engine, world: World) -> tuple[int, int, int]:
    mine = add_row(engine, tenant_id=world.tenants["A"], user_id=world.users["A"],
                   vm_id=world.vms["A"], vm_name="vmA")  # fmt: skip
    theirs = add_row(engine, tenant_id=world.tenants["B"], user_id=world.users["B"],
                     login="userb", vm_id=world.vms["B"], vm_name="vmB",
                     client_address="203.0.113.99")  # fmt: skip
    stray = add_row(engine, kind="login", result="unauthorized", login="userb")
    return mine, theirs, stray


def test_tenant_a_never_reads_tenant_b_rows(api: Api, api_engine: Engine, world: World) -> None:
    mine, theirs, stray = _seed(api_engine, world)
    sid = api.login("adminA", "tenantA")
    for filters in (None, {"user_id": world.users["B"]}, {"vm_id": world.vms["B"]},
                    {"login": "userb"}, {"id": [theirs, stray]},
                    {"-or": ["id", theirs, "id", stray]}):  # fmt: skip
        r = api.act("session_get_list", sid=sid, filters=filters)
        assert r["status"] == 0, r
        assert {row["id"] for row in r["rows"]} <= {mine}, filters
        assert "203.0.113.99" not in json.dumps(r)
    refused = api.act("session_get_list", sid=sid, filters={"tenant_id": world.tenants["B"]})
    assert refused["status"] != 0
    assert "userb" not in json.dumps(refused)

    headers = api.headers("adminA", "tenantA")
    page = api.client.get("/api/v1/session_history", headers=headers)
    assert [row["id"] for row in page.json()["rows"]] == [mine]
    for filters in (None, {"vm_id": world.vms["B"]}, {"login": "userb"}):
        params = {"filters": json.dumps(filters)} if filters else {}
        exported = api.client.get("/api/v1/session_history.csv", headers=headers, params=params)
        assert exported.status_code == 200
        ids = [int(r[0]) for r in list(csv.reader(io.StringIO(exported.text)))[1:]]
        assert set(ids) <= {mine}, filters
        assert "203.0.113.99" not in exported.text
        assert "vmB" not in exported.text
    tenant_field = api.client.get(
        "/api/v1/session_history.csv", headers=headers, params={"fields": "id,tenant_id"}
    )
    assert tenant_field.status_code >= 400

    root = api.login("root")
    every = api.act("session_get_list", sid=root, filters={"id": [mine, theirs, stray]})
    assert {row["id"] for row in every["rows"]} == {mine, theirs, stray}
