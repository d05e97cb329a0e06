"""The original WAT's transport against a real API server (real-clients.md section D):
every call a body-less ``POST /api/?…`` (trailing slash answered directly) with all
arguments in the query string; 3200 on page load; login with query-string
credentials; the setup fields at the top level with ``sid``; later calls with ``sid``
in the query; lists with query-string filters, fields, order_by, block and offset;
flat ``-or`` filters; ids as strings; ``block: 0``; the WebSocket in query form."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import PASSWORD
from tests.api.contract.conftest import Server, Wat, no_booleans
from tests.api.faces.test_ws import Closed, WsClient

SETUP_FIELDS = ("admin_id", "admin_name", "tenant_id", "tenant_name", "acls", "admin_language",
                "tenant_language", "block", "views", "multitenant", "sid")  # fmt: skip


@pytest.fixture
def wat(server: Server) -> Iterator[Wat]:
    with server.client() as client:
        yield Wat(client)


@pytest.fixture
def root(wat: Wat) -> Wat:
    r = wat.call("current_admin_setup", login="root", password=PASSWORD, tenant="*")
    assert r["status"] == 0, r
    wat.sid = r["sid"]
    return wat


def test_the_login_sequence(server: Server, wat: Wat) -> None:
    # page load: no credentials -> 3200, the status on which the WAT draws its login form
    r = wat.call("current_admin_setup")
    assert r["status"] == 3200, r
    # the login form: credentials in the query string of POST /api/ (no redirect)
    r = wat.call("current_admin_setup", login="adminA", password=PASSWORD, tenant="tenantA")
    assert r["status"] == 0, r
    for key in SETUP_FIELDS:
        assert key in r, key
    assert (r["admin_name"], r["tenant_name"]) == ("adminA", "tenantA")
    assert (r["admin_id"], r["tenant_id"]) == (server.world.admins["A"],
                                               server.world.tenants["A"])  # fmt: skip
    assert isinstance(r["acls"], list)
    assert "vm.see-main." in r["acls"]
    assert r["multitenant"] == 1
    assert isinstance(r["block"], int)
    assert len(r["sid"]) >= 40
    no_booleans(r)
    wat.sid = r["sid"]
    # later calls carry sid in the query, not the cookie: forget the cookie
    wat.client.cookies.clear()
    listed = wat.call("vm_get_list")
    assert (listed["status"], listed["total"]) == (0, 1)
    # a reload: the setup again with the kept sid, same session
    again = wat.call("current_admin_setup")
    assert (again["status"], again["sid"], again["admin_name"]) == (0, wat.sid, "adminA")
    # logout with sid in the query, then the sid is dead
    out = wat.client.post("/api/logout/", params={"sid": wat.sid}).json()
    assert out["status"] == 0
    assert wat.call("vm_get_list")["status"] == 3300


def test_the_trailing_slash_is_answered_not_redirected(server: Server, root: Wat) -> None:
    for path in ("/api/", "/api", "/api/info/", "/api/info"):
        response = root.client.post(path, params=root.query("vm_get_list") | {"sid": root.sid})
        assert response.status_code == 200, (path, response.status_code)
        assert not response.is_redirect
        assert response.json()["status"] == 0
        assert response.headers["access-control-allow-origin"] == "*"  # a WAT on another origin


def test_lists_with_query_string_arguments(server: Server, root: Wat) -> None:
    w = server.world
    args: dict[str, Any] = {
        "filters": {"name": {"~": "vm%"}}, "fields": ["id", "name", "blocked"],
        "order_by": {"field": ["name"], "order": "-desc"},
    }  # fmt: skip
    r = root.call("vm_get_list", **args)
    assert r["status"] == 0, r
    assert [row["name"] for row in r["rows"]] == ["vmB", "vmA"]
    assert r["rows"][0] == {"id": w.vms["B"], "name": "vmB", "blocked": 0}
    # block (page size) and offset (1-based page number)
    r = root.call("vm_get_list", block=1, offset=2, **args)
    assert (r["total"], r["rows"]) == (2, [{"id": w.vms["A"], "name": "vmA", "blocked": 0}])
    # block and offset JSON-encoded as strings, as a query string carries them
    r = root.call("vm_get_list", block="1", offset="1", **args)
    assert [row["name"] for row in r["rows"]] == ["vmB"]


def test_empty_query_arguments_are_absent(server: Server, root: Wat) -> None:
    r = root.call("vm_get_list", filters="", fields="", order_by="", arguments="")
    assert (r["status"], r["total"]) == (0, 2)


def test_block_0_means_no_paging(server: Server, root: Wat) -> None:
    r = root.call("property_get_list", block=0)
    assert r["status"] == 0, r
    assert r["total"] == len(r["rows"]) >= 2
    r = root.call("vm_get_list", block=0, offset=1, fields=["id"])
    assert r["total"] == len(r["rows"]) == 2


def test_flat_or_filters(server: Server, root: Wat) -> None:
    w = server.world
    r = root.call("user_get_list", fields=["id"],
                  filters={"-or": ["tenant_id", w.tenants["A"], "tenant_id", 0]})  # fmt: skip
    assert r["status"] == 0, r
    assert [row["id"] for row in r["rows"]] == [w.users["A"]]
    di = str(w.dis["A"])
    r = root.call("vm_get_list", fields=["id"],
                  filters={"-or": ["di_id", di, "di_id_in_use", di]})  # fmt: skip
    assert r["status"] == 0, r
    assert [row["id"] for row in r["rows"]] == [w.vms["A"]]
    r = root.call("vm_get_list", fields=["id"],
                  filters={"-or": ["id", w.vms["B"], "id", w.vms["A"]]})  # fmt: skip
    assert sorted(row["id"] for row in r["rows"]) == sorted(w.vms.values())
    r = root.call("vm_get_list", filters={"-or": ["id", 1, "id"]})  # a field without a value
    assert r["status"] == 6210
    assert r["message"]


def test_ids_as_strings(server: Server, root: Wat) -> None:
    w = server.world
    r = root.call("vm_get_list", fields=["id"], filters={"id": str(w.vms["A"])})
    assert r["rows"] == [{"id": w.vms["A"]}]
    r = root.call("vm_get_list", fields=["id"], filters={"id": [str(i) for i in w.vms.values()]})
    assert r["total"] == 2
    r = root.call("vm_update", filters={"id": {"=": [str(w.vms["B"])]}},
                  arguments={"description": "from the WAT"})  # fmt: skip
    assert (r["status"], r["total"]) == (0, 1), r
    r = root.call("vm_get_list", fields=["description"], filters={"id": str(w.vms["B"])})
    assert r["rows"] == [{"description": "from the WAT"}]
    r = root.call("user_get_list", fields=["id"], filters={"tenant_id": str(w.tenants["B"])})
    assert r["rows"] == [{"id": w.users["B"]}]


def test_block_and_unblock_from_the_list(server: Server, root: Wat) -> None:
    w = server.world
    ids = [str(w.users["A"]), str(w.users["B"])]
    r = root.call("user_update", filters={"id": ids}, arguments={"blocked": 1})
    assert (r["status"], r["total"], r["rows"]) == (0, 2, [])
    r = root.call("user_get_list", fields=["blocked"], filters={"id": ids})
    assert [row["blocked"] for row in r["rows"]] == [1, 1]
    r = root.call("user_update", filters={"id": ids}, arguments={"blocked": 0})
    assert (r["status"], r["total"]) == (0, 2)


def test_errors_are_qvd_bodies(root: Wat) -> None:
    r = root.call("vm_get_list", filters="{not json")
    assert (r["status"], "rows" in r) == (6100, False)
    r = root.call("vm_get_list", order_by={"field": ["name"], "order": "sideways"})
    assert r["status"] == 6600
    r = root.call("no_such_action")
    assert r["status"] == 4100


# ------------------------------------------------------------------ WebSocket


def _ws(server: Server, params: dict[str, Any]) -> WsClient:
    query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    target = "/api/ws?" + urllib.parse.urlencode(query)
    return WsClient(server.port, server.context(), target, [])


def test_websocket_in_query_form_answers_each_request(server: Server, root: Wat) -> None:
    w = server.world
    sock = _ws(server, {**root.query("vm_get_list", fields=["id", "name", "blocked"],
                                     filters={"-or": ["id", w.vms["A"], "id", w.vms["B"]]},
                                     order_by={"field": ["id"], "order": "-asc"}),
                        "sid": root.sid or ""})  # fmt: skip
    try:
        first = sock.recv_json()
        assert first["status"] == 0, first
        assert [row["id"] for row in first["rows"]] == sorted(w.vms.values())
        assert first["rows"][0]["blocked"] == 0
        sock.send("refresh")  # asks for the list again: answered even though unchanged
        again = sock.recv_json()
        assert again["rows"] == first["rows"]
        sock.send("ACK")  # a bare keep-alive is not a request
        sock.quiet(0.5)
    finally:
        sock.close()


def test_websocket_errors_carry_rows(server: Server, root: Wat) -> None:
    sock = _ws(server, {**root.query("vm_get_list", fields=["nope"]), "sid": root.sid or ""})
    try:
        refusal = sock.recv_json()
        assert (refusal["status"], refusal["rows"]) == (6250, [])
        with pytest.raises(Closed):
            sock.recv()
    finally:
        sock.close()
    sock = _ws(server, {"action": "vm_get_list", "sid": "not-a-session"})
    try:
        refusal = sock.recv_json()
        assert (refusal["status"], refusal["rows"]) == (3300, [])
    finally:
        sock.close()


def test_websocket_login_in_the_query(server: Server) -> None:
    sock = _ws(server, {"action": "vm_get_list", "fields": ["name"], "login": "adminB",
                        "password": PASSWORD, "tenant": "tenantB"})  # fmt: skip
    try:
        assert sock.recv_json()["rows"] == [{"name": "vmB"}]
    finally:
        sock.close()
