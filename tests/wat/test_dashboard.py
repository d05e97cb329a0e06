"""The dashboard (server side): its numbers match the database, each block needs its
ACLs, a tenant administrator sees their tenant's numbers only, a superadmin's tenant
choice applies, and every live block carries the /api/ws query that follows it."""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from qvd.wat.pages.dashboard import remaining, ws_query
from tests.wat.conftest import Wat, serve_wat


@dataclass
class DashWat(Wat):
    engine: Engine

    def sql(self, statement: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement), values)


@pytest.fixture
def dash(engine: Engine, tmp_path: Path) -> Iterator[DashWat]:
    with serve_wat(engine, tmp_path) as wat:
        yield DashWat(wat.client, wat.world, engine)


_COUNTER = re.compile(
    r'<div id="count-([a-z-]+)"[^>]*>\s*<dt>[^<]*</dt>\s*'
    r'<dd><output data-stat="[a-z_.]+">([^<]*)</output>'
)


def counters(page: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _COUNTER.finditer(page)}


def queries(page: str) -> dict[str, dict[str, str]]:
    found = {}
    stats = re.search(r'<div id="dashboard"[^>]* data-dash-query="([^"]*)"', page)
    if stats:
        found["stats"] = html.unescape(stats.group(1))
    for m in re.finditer(r'data-dash-panel="([a-z-]+)" data-dash-query="([^"]*)"', page):
        found["panel-" + m.group(1)] = html.unescape(m.group(2))
    return {k: dict(urllib.parse.parse_qsl(v)) for k, v in found.items()}


def test_the_numbers_match_the_database_and_follow_it(dash: DashWat) -> None:
    dash.login()
    page = dash.client.get("/").text
    numbers = counters(page)
    assert numbers["vms-total"] == "2"
    assert numbers["vms-stopped"] == "2"
    assert numbers["vms-running"] == "0"
    assert numbers["users-total"] == "2"
    assert numbers["users-connected"] == "0"
    assert numbers["blocked-vms"] == numbers["blocked-users"] == numbers["blocked-dis"] == "0"
    assert 'id="panel-nodes"' in page
    assert ">node1</a>" in page
    assert 'id="dis-published"' in page

    vm_a, vm_b = dash.world.vms["A"], dash.world.vms["B"]
    dash.sql(
        "UPDATE vm_runtimes SET vm_state = 'running', user_state = 'connected', blocked = true, "
        "host_id = :host WHERE vm_id = :vm", host=dash.world.host, vm=vm_a,
    )  # fmt: skip
    dash.sql("UPDATE vm_runtimes SET vm_state = 'starting' WHERE vm_id = :vm", vm=vm_b)
    dash.sql("UPDATE users SET blocked = true WHERE id = :u", u=dash.world.users["B"])
    page = dash.client.get("/").text
    numbers = counters(page)
    assert (numbers["vms-running"], numbers["vms-starting"], numbers["vms-stopped"]) == (
        "1", "1", "0",
    )  # fmt: skip
    assert numbers["users-connected"] == "1"
    assert numbers["blocked-vms"] == numbers["blocked-users"] == "1"
    node_row = re.search(rf'<tr data-id="{dash.world.host}">.*?</tr>', page, re.S)
    assert node_row is not None
    assert '<td data-field="number_of_vms">1</td>' in node_row.group(0)  # vmB has no node yet


def test_each_live_block_carries_the_query_it_shows(dash: DashWat) -> None:
    dash.login()
    found = queries(dash.client.get("/").text)
    assert found["stats"] == {"action": "qvd_objects_statistics"}  # all tenants
    errors = found["panel-errors"]
    assert errors["action"] == "log_get_list"
    assert json.loads(errors["filters"]) == {"status": {"!=": 0}}
    assert json.loads(errors["order_by"]) == {"field": ["time", "id"], "order": "-desc"}
    assert "sid" not in "".join(v for q in found.values() for v in q)


def test_a_tenant_admin_sees_their_tenant_only(dash: DashWat) -> None:
    dash.sql(
        "UPDATE vm_runtimes SET vm_state = 'running', host_id = :host WHERE vm_id = :vm",
        host=dash.world.host, vm=dash.world.vms["B"],
    )  # fmt: skip
    dash.sql(
        "UPDATE vm_runtimes SET last_error = 'failed in B' WHERE vm_id = :vm",
        vm=dash.world.vms["B"],
    )
    dash.sql(
        "INSERT INTO audit_log (administrator_name, tenant_id, action, type_of_action, "
        "qvd_object, object_name, status) VALUES ('adminB', :t, 'vm_start', 'exec', 'vm', "
        "'vmB', 5130)", t=dash.world.tenants["B"],
    )  # fmt: skip
    dash.login("adminA", "tenantA")
    page = dash.client.get("/").text
    numbers = counters(page)
    assert numbers["vms-total"] == "1"
    assert numbers["vms-running"] == "0"  # tenant B's running VM is not counted
    assert numbers["users-total"] == "1"
    assert "blocked-hosts" not in numbers  # nodes are the superadmin's
    assert 'id="panel-nodes"' not in page
    assert "vmB" not in page  # neither tenant B's failed VM nor its log entry
    assert "failed in B" not in page
    assert dash.client.get("/dashboard/panels/nodes").status_code == 404


def test_a_superadmin_tenant_choice_applies(dash: DashWat) -> None:
    csrf = dash.login()
    r = dash.client.post(
        "/settings/tenant", data={"tenant": str(dash.world.tenants["B"]), "next": "/", "csrf": csrf}
    )
    assert r.status_code == 303
    page = dash.client.get("/").text
    numbers = counters(page)
    assert numbers["vms-total"] == "1"
    assert numbers["users-total"] == "1"
    assert json.loads(queries(page)["stats"]["filters"]) == {"tenant_id": dash.world.tenants["B"]}


def test_errors_and_expiry_panels(dash: DashWat) -> None:
    vm_a = dash.world.vms["A"]
    dash.sql(
        "UPDATE vm_runtimes SET last_error = 'the disk image <b>vanished</b>', "
        "vm_expiration_hard = now() + interval '2 days 3 hours 5 minutes' WHERE vm_id = :vm",
        vm=vm_a,
    )
    dash.sql(
        "INSERT INTO audit_log (administrator_id, administrator_name, tenant_id, action, "
        "type_of_action, qvd_object, object_id, object_name, status, superadmin) VALUES "
        "(NULL, 'adminA', :t, 'vm_start', 'exec', 'vm', :vm, 'vmA', 5130, false)",
        t=dash.world.tenants["A"], vm=vm_a,
    )  # fmt: skip
    dash.login()
    page = dash.client.get("/").text
    assert "the disk image &lt;b&gt;vanished&lt;/b&gt;" in page  # data, escaped
    assert "2 d 3 h" in page
    errors = dash.client.get("/dashboard/panels/errors")
    assert errors.status_code == 200
    assert "<html" not in errors.text  # a fragment
    assert '<td data-field="status">5130</td>' in errors.text
    assert '<td data-field="action">vm_start</td>' in errors.text
    assert dash.client.get("/dashboard/panels/nope").status_code == 404


def test_the_dashboard_needs_a_session(dash: DashWat) -> None:
    assert dash.client.get("/").status_code == 303
    assert dash.client.get("/dashboard/panels/nodes").status_code == 303


def test_ws_query_and_remaining() -> None:
    q = dict(urllib.parse.parse_qsl(ws_query("vm_get_list", order_by=[("name", False)], block=5)))
    assert ws_query("qvd_objects_statistics", fields=()) == "action=qvd_objects_statistics"
    assert q == {
        "action": "vm_get_list", "fields": '["id"]', "block": "5", "offset": "1",
        "order_by": '{"field": ["name"], "order": "-asc"}',
    }  # fmt: skip
    assert remaining(59) == "0 min"
    assert remaining(3 * 3600 + 600) == "3 h 10 min"
    assert remaining(None) == ""


def test_the_dashboard_in_spanish(dash: DashWat) -> None:
    csrf = dash.login()
    r = dash.client.post("/settings/language", data={"language": "es", "next": "/", "csrf": csrf})
    assert r.status_code == 303
    page = dash.client.get("/").text
    for spanish in ("Máquinas virtuales por estado", "Objetos bloqueados", "En marcha",
                 "Errores recientes", "Próximas a caducar", "RAM libre (MB)"):  # fmt: skip
        assert spanish in page, spanish
