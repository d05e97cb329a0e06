"""The action face ``POST /api``: QVD's JSON contract (reference §5.2, real-clients.md
transcript C), authentication and sessions, and each documented error status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from qvd.db.models import ApiSession, AuditLog, Host, HostRuntime
from tests.api.conftest import PASSWORD, Api, World

CLI = {"parameters": {"source": "CLI"}}


def test_qa4_sends_credentials_in_every_request(api: Api, world: World) -> None:
    # transcript C, byte for byte apart from the credentials
    body = {
        "action": "vm_get_list",
        "arguments": {},
        "fields": [],
        "filters": {},
        "login": "adminA",
        "order_by": {"field": [], "order": "-asc"},
        "parameters": {"source": "CLI"},
        "password": PASSWORD,
        "tenant": "tenantA",
    }
    r = api.client.post("/api", json=body).json()
    assert r["status"] == 0
    assert r["total"] == 1
    assert r["rows"][0]["name"] == "vmA"
    assert r["message"] == "Successful completion"


def test_qa4_id_lookup_then_start_by_ids(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    r = api.act("vm_get_list", sid=sid, fields=["id"], filters={"name": {"=": "vmA"}})
    assert r["rows"] == [{"id": world.vms["A"]}]
    r = api.act("vm_start", sid=sid, filters={"id": {"=": [world.vms["A"]]}}, **CLI)
    assert (r["status"], r["rows"]) == (0, [])


def test_qa4_vm_create_takes_user_and_osf_names(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    r = api.act("vm_create", sid=sid, arguments={"name": "myvm", "user": "usera", "osf": "osfA"})
    assert r["status"] == 0
    new_id = r["rows"][0]["id"]
    got = api.act("vm_get_list", sid=sid, filters={"id": new_id}, fields=["di_tag", "ip", "state"])
    assert got["rows"][0]["di_tag"] == "default"
    assert got["rows"][0]["ip"] == "10.0.0.100"
    assert got["rows"][0]["state"] == "stopped"


def test_current_admin_setup_opens_a_session_and_logout_ends_it(api: Api, world: World) -> None:
    r = api.act("current_admin_setup", login="adminA", password=PASSWORD, tenant="tenantA")
    assert r["status"] == 0
    row = r["rows"][0]
    assert (row["admin_name"], row["tenant_name"]) == ("adminA", "tenantA")
    assert row["sid"] == r["sid"]
    assert len(r["sid"]) >= 40
    assert api.act("user_get_list", sid=r["sid"])["status"] == 0
    out = api.client.post("/api/logout", json={"sid": r["sid"]}).json()
    assert out["status"] == 0
    assert api.act("user_get_list", sid=r["sid"])["status"] == 3300
    assert api.client.post("/api/logout", json={"sid": r["sid"]}).json()["status"] == 3600


def test_the_session_cookie_is_secure_and_works(api: Api, world: World) -> None:
    response = api.client.post(
        "/api",
        json={
            "action": "current_admin_setup",
            "login": "root",
            "password": PASSWORD,
            "tenant": "*",
        },
    )
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/api" in cookie
    # the client keeps the cookie; a bare request is now authenticated
    assert api.client.post("/api", json={"action": "vm_get_list"}).json()["status"] == 0


def test_tokens_are_stored_hashed(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("root")
    with Session(api_engine) as s:
        stored = list(s.scalars(select(ApiSession.token_sha256)))
    assert sid not in stored
    assert all(len(h) == 64 for h in stored)


def test_arguments_the_body_lacks_come_from_the_query_string(api: Api, world: World) -> None:
    """As in QVD: the JSON body wins, the query string fills in (the WAT's form)."""
    sid = api.login("root")
    r = api.client.post(f"/api?sid={sid}", json={"action": "vm_get_list", "fields": ["name"]})
    assert r.json()["status"] == 0
    assert {row["name"] for row in r.json()["rows"]} == {"vmA", "vmB"}
    r = api.client.post("/api?action=user_get_list&sid=nope", json={"action": "vm_get_list",
                                                                    "sid": sid})  # fmt: skip
    assert r.json()["status"] == 0
    assert "user_id" in r.json()["rows"][0]  # the body's action ran


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"action": "vm_get_list"}, 3100),
        ({"action": "vm_get_list", "login": "root", "password": "nope", "tenant": "*"}, 3200),
        ({"action": "vm_get_list", "login": "ghost", "password": "nope", "tenant": "*"}, 3200),
        (
            {"action": "vm_get_list", "login": "root", "password": PASSWORD, "tenant": "tenantA"},
            3200,
        ),
        ({"action": "vm_get_list", "sid": "not-a-session"}, 3300),
    ],
)
def test_authentication_errors(api: Api, world: World, body: dict[str, Any], status: int) -> None:
    r = api.client.post("/api", json=body).json()
    assert r["status"] == status, r
    assert r["message"]


def test_blocked_tenant_cannot_log_in(api: Api, world: World) -> None:
    api.act(
        "tenant_update",
        sid=api.login("root"),
        filters={"id": world.tenants["A"]},
        arguments={"blocked": True},
    )
    r = api.act("vm_get_list", login="adminA", password=PASSWORD, tenant="tenantA")
    assert r["status"] == 3500


def test_failed_logins_are_rate_limited_and_audited(
    api: Api, world: World, api_engine: Engine
) -> None:
    for _ in range(5):
        assert api.act("vm_get_list", login="root", password="bad", tenant="*")["status"] == 3200
    r = api.act("vm_get_list", login="root", password=PASSWORD, tenant="*")
    assert r["status"] == 3200
    assert "too many failed logins" in r["message"]
    with Session(api_engine) as s:
        fails = s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "login")
        )
    assert fails == 6  # the failed tries and the refusal while locked out


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"action": ""}, 4110),
        ({"action": "vm_explode"}, 4100),
        ({"action": "vm_get_list", "order_by": {"field": ["name"], "order": "up"}}, 6600),
        ({"action": "vm_get_list", "order_by": {"field": ["nope"], "order": "-asc"}}, 6610),
        ({"action": "vm_get_list", "fields": ["nope"]}, 6250),
        ({"action": "vm_get_list", "filters": {"nope": 1}}, 6210),
        ({"action": "vm_get_list", "filters": {"id": "abc"}}, 6310),
        ({"action": "vm_get_list", "filters": {"id": {"??": 1}}}, 6210),
        ({"action": "vm_get_list", "block": "x"}, 6230),
        ({"action": "vm_create", "arguments": {"name": "x"}}, 6240),
        (
            {
                "action": "vm_create",
                "arguments": {"name": "x", "user": "usera", "osf": "osfA", "colour": "red"},
            },
            6230,
        ),
        ({"action": "vm_update", "arguments": {"name": "x"}}, 6220),
        ({"action": "vm_update", "filters": {"id": 1}, "arguments": {"name": "x"}}, 1300),
        (
            {
                "action": "user_create",
                "arguments": {"name": "usera", "password": "x", "tenant_id": 10000},
            },
            7200,
        ),
        ({"action": "osf_update", "filters": {"name": "osfA"}, "arguments": {"memory": -1}}, 1200),
        ({"action": "administrator_delete", "filters": {"name": "root"}}, 1200),
    ],
)
def test_request_errors(api: Api, world: World, body: dict[str, Any], status: int) -> None:
    r = api.act(sid=api.login("root"), **body)
    assert r["status"] == status, r
    assert r["message"]


def test_a_bad_json_body_is_6100(api: Api, world: World) -> None:
    r = api.client.post("/api", content=b"{nope", headers={"content-type": "application/json"})
    assert r.json()["status"] == 6100


def test_multi_object_failures_list_each_object(api: Api, world: World) -> None:
    sid = api.login("root")
    r = api.act("vm_stop", sid=sid, filters={"id": [world.vms["A"], world.vms["B"]]})
    assert r["status"] == 1200
    assert set(r["failures"]) == {str(world.vms["A"]), str(world.vms["B"])}
    assert all(f["status"] == 5120 for f in r["failures"].values())
    r = api.act("administrator_delete", sid=sid, filters={"name": "root"})
    failure = next(iter(r["failures"].values()))
    assert failure["status"] == 5200


def test_paging_is_by_block_and_one_based_page(api: Api, world: World) -> None:
    sid = api.login("root")
    for i in range(5):
        api.act(
            "user_create",
            sid=sid,
            arguments={"name": f"p{i}", "password": "x", "tenant_id": world.tenants["A"]},
        )
    first = api.act(
        "user_get_list",
        sid=sid,
        block=2,
        offset=1,
        fields=["name"],
        order_by={"field": ["name"], "order": "-desc"},
    )
    second = api.act(
        "user_get_list",
        sid=sid,
        block=2,
        offset=2,
        fields=["name"],
        order_by={"field": ["name"], "order": "-desc"},
    )
    assert first["total"] == 7
    assert [r["name"] for r in first["rows"]] == ["userb", "usera"]
    assert [r["name"] for r in second["rows"]] == ["p4", "p3"]


def test_form_encoded_requests_carry_json_fields(api: Api, world: World) -> None:
    sid = api.login("root")
    r = api.client.post(
        "/api",
        data={"action": "vm_get_list", "fields": '["name"]', "filters": '{"name": "vmA"}'},
        headers={"X-QVD-Sid": sid},
    ).json()
    assert r["rows"] == [{"name": "vmA"}]


def test_info_says_multitenant_and_schema(api: Api, world: World) -> None:
    r = api.client.post("/api/info", json={}).json()
    assert r["status"] == 0
    assert r["multitenant"] == 1
    assert r["version"]["database"]


def test_mutations_are_audited_with_secrets_masked(
    api: Api, world: World, api_engine: Engine
) -> None:
    sid = api.login("root")
    api.act(
        "user_create",
        sid=sid,
        arguments={"name": "zed", "password": "topsecret", "tenant_id": world.tenants["A"]},
        **CLI,
    )
    r = api.act(
        "log_get_list",
        sid=sid,
        filters={"action": "user_create"},
        fields=[
            "administrator_name",
            "arguments",
            "status",
            "source",
            "ip",
            "object_name",
            "qvd_object",
            "type_of_action",
        ],
    )
    row = r["rows"][0]
    assert row["administrator_name"] == "root"
    # QVD's face answers a log entry's arguments as JSON text
    assert json.loads(row["arguments"])["arguments"]["password"] == "**********"
    assert (row["status"], row["source"], row["ip"]) == (0, "CLI", "127.0.0.1")
    assert (row["object_name"], row["qvd_object"], row["type_of_action"]) == (
        "zed",
        "user",
        "create",
    )
    refused = api.act("vm_delete", sid=api.login("adminA", "tenantA"), filters={"id": 1})
    assert refused["status"] == 1300
    with Session(api_engine) as s:
        statuses = list(s.scalars(select(AuditLog.status).where(AuditLog.action == "vm_delete")))
    assert statuses == [1300]


def test_statistics_count_within_the_tenant(api: Api, world: World) -> None:
    root = api.act("qvd_objects_statistics", sid=api.login("root"))["rows"][0]
    mine = api.act("qvd_objects_statistics", sid=api.login("adminA", "tenantA"))["rows"][0]
    assert (root["vms_count"], root["users_count"], root["hosts_count"]) == (2, 2, 1)
    assert (mine["vms_count"], mine["users_count"]) == (1, 1)
    assert "hosts_count" not in mine  # host ACLs are the supertenant's


def test_metrics_count_requests_and_objects(api: Api, world: World) -> None:
    api.act("vm_get_list", sid=api.login("root"))
    text = api.client.get("/metrics").text
    assert 'qvd_api_requests_total{method="POST",route="/api",status="200"}' in text
    assert 'qvd_vms{state="stopped"} 2.0' in text
    assert 'qvd_hosts{state="running"} 1.0' in text


def test_metrics_say_which_backend_and_accelerator_each_node_chose(
    api: Api, world: World, api_engine: Engine
) -> None:
    assert "qvd_host_backend{" not in api.client.get("/metrics").text  # no HKD started yet
    with Session(api_engine) as s, s.begin():
        host = s.scalars(select(Host)).one()
        runtime = s.get(HostRuntime, host.id)
        assert runtime is not None
        runtime.backend_facts = json.dumps({"backend": "kvm", "accel": "tcg", "machine": "pc"})
        name = host.name
    text = api.client.get("/metrics").text
    assert f'qvd_host_backend{{accel="tcg",backend="kvm",host="{name}"}} 1.0' in text


def test_opening_a_session_is_audited(api: Api, world: World) -> None:
    api.login("adminA", "tenantA")
    r = api.act(
        "log_get_list",
        sid=api.login("root"),
        filters={"action": "login"},
        fields=["administrator_name", "tenant_name", "status", "type_of_action"],
    )
    assert {
        "administrator_name": "adminA",
        "tenant_name": "tenantA",
        "status": 0,
        "type_of_action": "login",
    } in r["rows"]


def test_booleans_are_0_or_1_here_and_json_booleans_on_rest(api: Api, world: World) -> None:
    """One service layer, two faces: QVD's ``/api`` sends 0/1 (nested too), ``/api/v1``
    real JSON types, as its OpenAPI document says."""
    sid = api.login("root")
    vm = world.vms["A"]
    api.act("vm_update", sid=sid, filters={"id": vm}, arguments={"blocked": True})
    row = api.act("vm_get_list", sid=sid, filters={"id": vm}, fields=["blocked"])["rows"][0]
    assert row["blocked"] == 1
    assert not isinstance(row["blocked"], bool)
    view = {"qvd_object": "vm", "view_type": "list_column", "field": "name", "visible": False}
    assert api.act("admin_attribute_view_set", sid=sid, arguments=view)["status"] == 0
    setup = api.act("current_admin_setup", sid=sid)
    flags = [v["visible"] for v in setup["views"]]
    assert flags  # nested rows, 0/1 there too
    assert all(f in (0, 1) and not isinstance(f, bool) for f in flags)
    rest = api.client.get(f"/api/v1/vms/{vm}", headers=api.headers("root")).json()
    assert rest["blocked"] is True
    doc = api.client.get("/api/v1/openapi.json").json()
    assert "true`/`false" in doc["info"]["description"]
    assert doc["components"]["schemas"]["VmUpdate"]["properties"]["blocked"]["anyOf"][0] == {
        "type": "boolean"
    }


def test_changes_answer_how_many_objects_they_acted_on(api: Api, world: World) -> None:
    sid = api.login("root")
    both = {"id": list(world.users.values())}
    r = api.act("user_update", sid=sid, filters=both, arguments={"description": "x"})
    assert (r["status"], r["total"], r["rows"]) == (0, 2, [])
    r = api.act("user_update", sid=sid, filters={"id": -5}, arguments={"description": "x"})
    assert r["status"] == 1300


def test_current_admin_setup_fields_at_the_top_level(api: Api, world: World) -> None:
    r = api.act("current_admin_setup")
    assert r["status"] == 3200  # not logged in: the WAT draws its login form
    r = api.act("current_admin_setup", login="adminA", password=PASSWORD, tenant="tenantA")
    row = r["rows"][0]
    for key in ("admin_id", "admin_name", "tenant_id", "tenant_name", "acls", "views"):
        assert r[key] == row[key], key
    assert (r["block"], r["multitenant"]) == (row["admin_block"], 1)
    assert r["sid"] == row["sid"]
    again = api.act("current_admin_setup", sid=r["sid"])
    assert again["sid"] == r["sid"]  # the WAT keeps it across reloads


@pytest.mark.parametrize(
    ("block", "offset", "names"),
    [(0, 1, ["vmA", "vmB"]), (0, 2, ["vmA", "vmB"]), (1, 2, ["vmB"]), ("1", "1", ["vmA"])],
)
def test_block_0_means_no_paging(
    api: Api, world: World, block: Any, offset: Any, names: list[str]
) -> None:
    r = api.act("vm_get_list", sid=api.login("root"), block=block, offset=offset,
                fields=["name"], order_by={"field": "name", "order": "-asc"})  # fmt: skip
    assert [row["name"] for row in r["rows"]] == names
    assert r["total"] == 2


@pytest.mark.parametrize("block", [-1, "x", 1.5, True, 2**31])
def test_bad_page_sizes_are_refused(api: Api, world: World, block: Any) -> None:
    r = api.act("vm_get_list", sid=api.login("root"), block=block)
    assert r["status"] == 6230
    assert "block" in r["message"]


def test_qvd_values_turns_every_boolean_into_0_or_1() -> None:
    from qvd.api.faces.action import qvd_values

    value = {"a": (True, [False, {"x": True}]), "b": [(False,)], "c": True, "d": 1.5, "e": None,
             "f": "true", "g": 0}  # fmt: skip
    assert qvd_values(value) == {"a": [1, [0, {"x": 1}]], "b": [[0]], "c": 1, "d": 1.5,
                                 "e": None, "f": "true", "g": 0}  # fmt: skip
    assert qvd_values(True) == 1
    assert type(qvd_values(False)) is int
