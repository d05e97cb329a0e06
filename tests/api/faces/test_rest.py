"""The REST face ``/api/v1``: sessions, CRUD of every resource, single-object
actions and the HTTP statuses of errors."""

from __future__ import annotations

from typing import Any

import pytest

from qvd.db.seed_acls import ALL_ACLS
from tests.api.conftest import PASSWORD, Api, World


def test_login_logout_and_current(api: Api, world: World) -> None:
    r = api.client.post(
        "/api/v1/sessions", json={"login": "adminA", "password": PASSWORD, "tenant": "tenantA"}
    )
    assert r.status_code == 201
    sid = r.json()["sid"]
    assert "HttpOnly" in r.headers["set-cookie"]
    headers = {"Authorization": f"Bearer {sid}"}
    me = api.client.get("/api/v1/sessions/current", headers=headers).json()
    assert (me["admin_name"], me["tenant_name"]) == ("adminA", "tenantA")
    assert api.client.delete("/api/v1/sessions/current", headers=headers).status_code == 204
    api.client.cookies.clear()
    r = api.client.get("/api/v1/vms", headers=headers)
    assert r.status_code == 401
    assert r.json()["status"] == 3300


def test_no_credentials_is_401_and_wrong_password_is_401_then_429(api: Api, world: World) -> None:
    assert api.client.get("/api/v1/vms").json()["status"] == 3100
    assert api.client.get("/api/v1/vms").status_code == 401
    for _ in range(5):
        r = api.client.post("/api/v1/sessions", json={"login": "root", "password": "bad"})
        assert r.status_code == 401
    r = api.client.post("/api/v1/sessions", json={"login": "root", "password": PASSWORD})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("tenants", {"name": "t-new"}, {"language": "es"}),
    ("administrators", {"name": "adm", "password": "x", "tenant_id": 1}, {"language": "en"}),
    (
        "roles",
        {"name": "r", "tenant_id": 1, "acls": ["vm.see-main."]},
        {"acls_changes": {"assign_acls": ["vm.see.id"]}},
    ),
    ("users", {"name": "bob", "password": "x", "tenant_id": 1}, {"blocked": True}),
    ("osfs", {"name": "o", "tenant_id": 1, "memory": 512}, {"memory": 1024}),
    ("hosts", {"name": "h2", "address": "10.9.9.9"}, {"blocked": True}),
    ("properties", {"key": "my.key", "tenant_id": 1, "objects": ["vm"]}, {"description": "d"}),
]


@pytest.mark.parametrize(("noun", "create", "change"), CASES, ids=[c[0] for c in CASES])
def test_crud(
    api: Api, world: World, noun: str, create: dict[str, Any], change: dict[str, Any]
) -> None:
    h = api.headers("root")
    r = api.client.post(f"/api/v1/{noun}", json=create, headers=h)
    assert r.status_code == 201, r.text
    new_id = r.json()["id"]
    assert api.client.get(f"/api/v1/{noun}/{new_id}", headers=h).json()["id"] == new_id
    r = api.client.patch(f"/api/v1/{noun}/{new_id}", json=change, headers=h)
    assert r.status_code == 200, r.text
    listed = api.client.get(f"/api/v1/{noun}", params={"filters": f'{{"id": {new_id}}}'}, headers=h)
    assert listed.json()["total"] == 1
    assert api.client.post(f"/api/v1/{noun}", json=create, headers=h).status_code == 409
    assert api.client.delete(f"/api/v1/{noun}/{new_id}", headers=h).status_code == 204
    assert api.client.get(f"/api/v1/{noun}/{new_id}", headers=h).status_code == 404


def test_vm_lifecycle_over_rest(api: Api, world: World) -> None:
    h = api.headers("adminA", "tenantA")
    r = api.client.post(
        "/api/v1/vms", json={"name": "d", "user": "usera", "osf": "osfA"}, headers=h
    )
    vm = r.json()["id"]
    started = api.client.post(f"/api/v1/vms/{vm}/start", headers=h)
    assert started.status_code == 200
    assert started.json()["vm_cmd"] == "start"
    again = api.client.post(f"/api/v1/vms/{vm}/start", headers=h)
    assert (again.status_code, again.json()["status"]) == (409, 5130)
    assert api.client.post(f"/api/v1/vms/{vm}/stop", headers=h).json()["vm_cmd"] is None
    assert api.client.post(f"/api/v1/vms/{vm}/block", headers=h).json()["blocked"] is True
    assert api.client.post(f"/api/v1/vms/{vm}/disconnect", headers=h).status_code == 409
    page = api.client.get(
        "/api/v1/vms", params={"fields": "name,state", "order_by": "-name", "limit": 1}, headers=h
    ).json()
    assert page == {"total": 2, "rows": [{"name": "vmA", "state": "stopped"}]}


def test_other_tenants_objects_are_404_not_403(api: Api, world: World) -> None:
    h = api.headers("adminA", "tenantA")
    for noun, kind in (("vms", "vms"), ("users", "users"), ("osfs", "osfs"), ("dis", "dis")):
        other = getattr(world, kind)["B"]
        assert api.client.get(f"/api/v1/{noun}/{other}", headers=h).status_code == 404
        assert api.client.delete(f"/api/v1/{noun}/{other}", headers=h).status_code == 404
    assert api.client.get("/api/v1/hosts", headers=h).status_code == 403


def test_validation_errors_are_4xx(api: Api, world: World) -> None:
    h = api.headers("root")
    assert api.client.post("/api/v1/users", json={"name": ""}, headers=h).status_code == 422
    assert api.client.get("/api/v1/vms", params={"filters": "{"}, headers=h).status_code == 400
    assert api.client.get("/api/v1/vms", params={"fields": "nope"}, headers=h).status_code == 400
    assert api.client.get("/api/v1/vms/99999999999", headers=h).status_code == 422


def test_configs_acls_logs_statistics_tags(api: Api, world: World) -> None:
    h = api.headers("root")
    r = api.client.put(
        "/api/v1/configs/vm.network.ip.start", json={"value": "10.5.0.10"}, headers=h
    )
    assert r.status_code == 200, r.text
    page = api.client.get(
        "/api/v1/configs", params={"filters": '{"key": "vm.network.ip.start"}'}, headers=h
    ).json()
    assert page["rows"][0]["operative_value"] == "10.5.0.10"
    assert page["rows"][0]["is_default"] is False
    assert (
        api.client.put("/api/v1/configs/no.such.token", json={"value": "1"}, headers=h).json()[
            "status"
        ]
        == 7382
    )
    assert (
        api.client.put("/api/v1/configs/database.host", json={"value": "x"}, headers=h).status_code
        == 409
    )
    assert (
        api.client.put("/api/v1/configs/api.port", json={"value": "x"}, headers=h).status_code
        == 400
    )
    assert api.client.delete("/api/v1/configs/vm.network.ip.start", headers=h).status_code == 204
    assert api.client.delete("/api/v1/configs/vm.network.ip.start", headers=h).status_code == 409
    acls = api.client.get("/api/v1/acls", params={"limit": 5}, headers=h).json()
    assert acls["total"] == len(ALL_ACLS)
    role = api.client.get("/api/v1/roles", params={"filters": '{"name": "Operator L1"}'}, headers=h)
    role_id = role.json()["rows"][0]["id"]
    acls = api.client.get(f"/api/v1/roles/{role_id}/acls", headers=h).json()
    assert acls["total"] > 10
    assert all(".see" in a["name"] or ".stats." in a["name"] for a in acls["rows"])
    logs = api.client.get("/api/v1/logs", headers=h).json()
    assert logs["rows"][0]["action"] == "config_delete"
    assert api.client.get("/api/v1/statistics", headers=h).json()["vms_count"] == 2
    tags = api.client.get("/api/v1/di-tags", params={"filters": '{"fixed": true}'}, headers=h)
    assert tags.json()["total"] == 2


def test_tenant_admin_config_is_per_tenant_only(api: Api, world: World) -> None:
    h = api.headers("adminA", "tenantA")
    assert (
        api.client.put(
            "/api/v1/configs/l7r.auth.plugins", json={"value": "ldap"}, headers=h
        ).status_code
        == 200
    )
    assert (
        api.client.put(
            "/api/v1/configs/vm.network.ip.start", json={"value": "10.1.1.1"}, headers=h
        ).status_code
        == 403
    )
    keys = {
        r["key"]
        for r in api.client.get("/api/v1/configs", params={"limit": 1000}, headers=h).json()["rows"]
    }
    assert "l7r.auth.plugins" in keys
    assert "vm.network.ip.start" not in keys


def test_openapi_document(api: Api) -> None:
    doc = api.client.get("/api/v1/openapi.json").json()
    paths = set(doc["paths"])
    for noun in (
        "tenants",
        "administrators",
        "roles",
        "acls",
        "users",
        "vms",
        "hosts",
        "osfs",
        "dis",
        "configs",
        "properties",
        "logs",
        "statistics",
        "sessions",
    ):
        assert f"/api/v1/{noun}" in paths, noun
    assert "/api/v1/vms/{object_id}/start" in paths
    assert "/api" not in paths  # the action face is QVD's contract, documented apart
