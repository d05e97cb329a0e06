"""WAT views: a tenant's default columns and filters, an administrator's own over
them; field validation, the views ACLs, tenant isolation, audit and the REST face."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.api.conftest import PASSWORD, Api, World


def _view(field: str = "name", **extra: Any) -> dict[str, Any]:
    return {
        "qvd_object": "vm",
        "view_type": "list_column",
        "field": field,
        "visible": False,
        **extra,
    }


def _rows(api: Api, sid: str, action: str = "tenant_view_get_list", **body: Any) -> list[Any]:
    r = api.act(action, sid=sid, **body)
    assert r["status"] == 0, r
    rows: list[Any] = r["rows"]
    return rows


def _admin(api: Api, world: World, name: str, acls: list[str], tenant: str = "A") -> str:
    """An administrator of tenant ``tenant`` holding exactly ``acls``; its session."""
    root = api.login("root")
    r = api.act(
        "role_create",
        sid=root,
        arguments={"name": f"r-{name}", "tenant_id": world.tenants[tenant], "__acls__": acls},
    )
    assert r["status"] == 0, r
    r = api.act(
        "administrator_create",
        sid=root,
        arguments={
            "name": name,
            "password": PASSWORD,
            "tenant_id": world.tenants[tenant],
            "__roles__": [f"r-{name}"],
        },
    )
    assert r["status"] == 0, r
    return api.login(name, f"tenant{tenant}")


def test_set_list_change_and_reset_tenant_views(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    assert _rows(api, sid) == []
    assert api.act("tenant_attribute_view_set", sid=sid, arguments=_view())["status"] == 0
    (row,) = _rows(api, sid)
    assert {k: v for k, v in row.items() if k != "id"} == {
        "tenant_id": world.tenants["A"],
        "qvd_object": "vm",
        "view_type": "list_column",
        "device_type": "desktop",
        "field": "name",
        "property": False,
        "visible": False,
    }
    # setting the same column again changes the row, it does not add one
    r = api.act("tenant_attribute_view_set", sid=sid, arguments=_view(visible=True))
    assert r == {"status": 0, "message": "Successful completion", "total": 1, "rows": []}
    assert [(x["id"], x["visible"]) for x in _rows(api, sid)] == [(row["id"], True)]
    for device in ("desktop", "mobile"):
        view = _view("state", view_type="filter", device_type=device)
        assert api.act("tenant_attribute_view_set", sid=sid, arguments=view)["status"] == 0
    assert len(_rows(api, sid)) == 3
    mobile = _rows(api, sid, filters={"device_type": "mobile"}, fields=["field", "view_type"])
    assert mobile == [{"field": "state", "view_type": "filter"}]

    r = api.act("tenant_view_reset", sid=sid, filters={"view_type": "filter"})
    assert r["status"] == 0, r
    assert [x["field"] for x in _rows(api, sid)] == ["name"]
    assert api.act("tenant_view_reset", sid=sid)["status"] == 0
    assert _rows(api, sid) == []
    r = api.act("tenant_view_reset", sid=sid)
    assert r["status"] == 1300, r


def test_property_views_name_a_registered_key_of_the_object(api: Api, world: World) -> None:
    sid, b = api.login("adminA", "tenantA"), world.tenants["B"]
    r = api.act(
        "property_create", sid=sid, arguments={"key": "dept", "__property_assign__": ["vm", "user"]}
    )
    assert r["status"] == 0, r
    ok = _view("dept", view_type="filter")
    assert api.act("tenant_property_view_set", sid=sid, arguments=ok)["status"] == 0
    rows = _rows(api, sid, fields=["field", "property"])
    assert rows == [{"field": "dept", "property": True}]
    # a list field of the same name is another row
    r = api.act("tenant_attribute_view_set", sid=sid, arguments=_view("name"))
    assert r["status"] == 0, r
    assert len(_rows(api, sid)) == 2

    root = api.login("root")
    secret = {"key": "secret", "tenant_id": world.tenants["B"], "__property_assign__": ["vm"]}
    assert api.act("property_create", sid=root, arguments=secret)["status"] == 0
    cases = [
        (_view("secret"), "not registered for vms"),  # tenant B's key, assigned to VMs
        (_view("dept", qvd_object="osf"), "not registered for osfs"),  # not assigned to OSFs
        (_view("propA"), "not registered for vms"),  # registered, assigned to nothing
        (_view("propB"), "not registered for vms"),  # tenant B's key
        (_view("nokey"), "not registered for vms"),
        (_view("dept", qvd_object="log"), "carry no custom properties"),
    ]
    for args, message in cases:
        r = api.act("tenant_property_view_set", sid=sid, arguments=args)
        assert (r["status"], message in r["message"]) == (6330, True), (args, r)
    for key in ("propB", "secret"):
        r = api.act("admin_property_view_set", sid=sid, arguments=_view(key))
        assert r["status"] == 6330, r
    # superadmins reach every tenant's keys
    r = api.act("tenant_property_view_set", sid=root, arguments=_view("secret", tenant_id=b))
    assert r["status"] == 0, r
    assert api.act("admin_property_view_set", sid=root, arguments=_view("secret"))["status"] == 0
    r = api.act("tenant_property_view_set", sid=root, arguments=_view("dept", tenant_id=b))
    assert r["status"] == 6330, r


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        ({**_view(), "qvd_object": "nope"}, 6320, "qvd_object"),
        ({**_view(), "view_type": "column"}, 6320, "list_column, filter"),
        ({**_view(), "device_type": "tv"}, 6320, "desktop, mobile"),
        (_view("colour"), 6320, "vm has no list field 'colour' (known: "),
        (_view("properties", view_type="filter"), 6320, "cannot be filtered"),
        (_view("  "), 6320, "cannot be empty"),
        ({**_view(), "visible": "maybe"}, 6320, "visible"),
        ({"qvd_object": "vm", "view_type": "filter", "visible": True}, 6240, "'field'"),
        ({"qvd_object": "vm", "view_type": "filter", "field": "name"}, 6240, "'visible'"),
        ({**_view(), "colour": "red"}, 6230, "'colour'"),
        ({**_view(), "property": True}, 6230, "'property'"),
        ({**_view(), "field": ["name"]}, 6320, "field"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(
    args: dict[str, Any], status: int, words: str, shared: tuple[Api, World, Engine]
) -> None:
    api, _world, _engine = shared
    for action, who in (
        ("tenant_attribute_view_set", ("adminA", "tenantA")),
        ("admin_attribute_view_set", ("adminB", "tenantB")),
    ):
        r = api.act(action, sid=api.login(*who), arguments=args)
        assert r["status"] == status, (action, r)
        assert words in r["message"], (action, r)


def test_every_object_kind_takes_its_own_list_fields(shared: tuple[Api, World, Engine]) -> None:
    api, _world, _engine = shared
    sid = api.login("root")
    fields = {
        "user": "number_of_vms",
        "vm": "host_name",
        "log": "action",
        "host": "address",
        "osf": "memory",
        "di": "tags",
        "role": "fixed",
        "administrator": "roles",
        "tenant": "block",
    }
    for obj, field in fields.items():
        args = _view(field, qvd_object=obj, device_type="mobile")
        assert api.act("admin_attribute_view_set", sid=sid, arguments=args)["status"] == 0
        wrong = _view("address" if obj != "host" else "memory", qvd_object=obj)
        assert api.act("admin_attribute_view_set", sid=sid, arguments=wrong)["status"] == 6320
    rows = _rows(api, sid, "admin_view_get_list", filters={"device_type": "mobile"})
    assert {(r["qvd_object"], r["field"]) for r in rows} == set(fields.items())
    assert api.act("admin_view_reset", sid=sid)["status"] == 0


def test_the_views_acls(api: Api, world: World, api_engine: Engine) -> None:
    reader = _admin(api, world, "reader", ["views.see-main."])
    columns = _admin(api, world, "columns", ["views.update.columns"])
    mobile = _admin(api, world, "mobile", ["views.update.filters-mobile"])
    nothing = _admin(api, world, "nothing", ["vm.see-main."])

    assert api.act("tenant_view_get_list", sid=reader)["status"] == 0
    for sid in (columns, mobile, nothing):
        assert api.act("tenant_view_get_list", sid=sid)["status"] == 4210
    assert api.act("tenant_attribute_view_set", sid=reader, arguments=_view())["status"] == 4210

    assert api.act("tenant_attribute_view_set", sid=columns, arguments=_view())["status"] == 0
    r = api.act(
        "tenant_attribute_view_set", sid=columns, arguments=_view("state", view_type="filter")
    )
    assert (r["status"], "views.update.filters-desktop" in r["message"]) == (4210, True), r
    for device, status in (("mobile", 0), ("desktop", 4210)):
        args = _view("state", view_type="filter", device_type=device)
        r = api.act("tenant_attribute_view_set", sid=mobile, arguments=args)
        assert r["status"] == status, r
    # a reset that would drop a column needs views.update.columns: nothing is dropped
    r = api.act("tenant_view_reset", sid=mobile)
    assert (r["status"], "views.update.columns" in r["message"]) == (4210, True), r
    with api_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM tenant_views")) == 2
    assert api.act("tenant_view_reset", sid=mobile, filters={"view_type": "filter"})["status"] == 0
    assert api.act("tenant_view_reset", sid=columns)["status"] == 0

    # an administrator's own views need no ACL at all (as in QVD)
    assert api.act("admin_attribute_view_set", sid=nothing, arguments=_view())["status"] == 0
    assert len(_rows(api, nothing, "admin_view_get_list")) == 1
    assert api.act("admin_view_reset", sid=nothing)["status"] == 0


def test_admin_views_override_the_tenant_defaults(api: Api, world: World) -> None:
    admin_a = api.login("adminA", "tenantA")
    other_a = _admin(api, world, "other", ["vm.see-main."])
    for field, visible in (("name", False), ("ip", True)):
        args = _view(field, visible=visible)
        assert api.act("tenant_attribute_view_set", sid=admin_a, arguments=args)["status"] == 0
    r = api.act("admin_attribute_view_set", sid=admin_a, arguments=_view("name", visible=True))
    assert r["status"] == 0, r
    r = api.act("admin_attribute_view_set", sid=admin_a, arguments=_view("state"))
    assert r["status"] == 0, r

    def effective(sid: str) -> set[tuple[str, bool, str]]:
        rows = _rows(api, sid, "admin_view_get_list")
        return {(x["field"], x["visible"], x["source"]) for x in rows}

    assert effective(admin_a) == {
        ("name", True, "admin"),
        ("state", False, "admin"),
        ("ip", True, "tenant"),
    }
    assert effective(other_a) == {("name", False, "tenant"), ("ip", True, "tenant")}
    only_mine = _rows(
        api,
        admin_a,
        "admin_view_get_list",
        filters={"source": "admin"},
        fields=["field"],
        order_by={"field": ["field"], "order": "-desc"},
    )
    assert only_mine == [{"field": "state"}, {"field": "name"}]
    assert effective(api.login("adminB", "tenantB")) == set()
    # current_admin_setup carries the same effective views
    setup = api.act("current_admin_setup", sid=admin_a)["rows"][0]
    assert {(x["field"], x["visible"], x["source"]) for x in setup["views"]} == effective(admin_a)

    # reset drops the administrator's own rows only, never the tenant's
    r = api.act("admin_view_reset", sid=admin_a, filters={"field": "name"})
    assert r["status"] == 0, r
    assert ("name", False, "tenant") in effective(admin_a)
    assert api.act("admin_view_reset", sid=admin_a)["status"] == 0
    assert effective(admin_a) == effective(other_a)
    assert api.act("admin_view_reset", sid=admin_a)["status"] == 1300
    assert len(_rows(api, admin_a)) == 2
    r = api.act("admin_view_reset", sid=admin_a, filters={"tenant_id": world.tenants["A"]})
    assert r["status"] == 6210, r


def test_a_tenant_admin_neither_sees_nor_changes_another_tenants_views(
    api: Api, world: World, api_engine: Engine
) -> None:
    root = api.login("root")
    b = world.tenants["B"]
    for field in ("name", "ip"):
        args = _view(field, tenant_id=b)
        assert api.act("tenant_attribute_view_set", sid=root, arguments=args)["status"] == 0
    r = api.act("admin_attribute_view_set", sid=api.login("adminB", "tenantB"), arguments=_view())
    assert r["status"] == 0

    def b_rows() -> list[Any]:
        with api_engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT 't', id, visible FROM tenant_views WHERE tenant_id = :b "
                        "UNION ALL SELECT 'a', v.id, visible FROM administrator_views v "
                        "JOIN administrators a ON a.id = v.administrator_id "
                        "WHERE a.tenant_id = :b ORDER BY 1, 2"
                    ),
                    {"b": b},
                )
            )

    before = b_rows()
    assert len(before) == 3
    sid = api.login("adminA", "tenantA")
    assert _rows(api, sid) == []
    assert _rows(api, sid, "admin_view_get_list") == []
    assert api.act("tenant_view_get_list", sid=sid, filters={"tenant_id": b})["status"] == 4220
    r = api.act("tenant_view_get_list", sid=sid, filters={"-and": [{"tenant_id": b}]})
    assert r["status"] == 6210, r
    r = api.act("tenant_attribute_view_set", sid=sid, arguments=_view(tenant_id=b))
    assert r["status"] == 4230, r
    assert api.act("tenant_view_reset", sid=sid, filters={"tenant_id": b})["status"] == 4220
    assert api.act("tenant_view_reset", sid=sid)["status"] == 1300
    assert api.act("admin_view_reset", sid=sid)["status"] == 1300
    assert b_rows() == before

    # superadmins pick the tenant; their own default is the supertenant's
    assert len(_rows(api, root, filters={"tenant_id": b})) == 2
    assert len(_rows(api, root, filters={"tenant_id": {"=": b}, "field": "ip"})) == 1
    assert _rows(api, root) == []
    for bad in (-1, 0xDEAD):
        r = api.act("tenant_attribute_view_set", sid=root, arguments=_view(tenant_id=bad))
        assert r["status"] == 7110, r
    r = api.act("tenant_view_get_list", sid=root, filters={"tenant_id": [1, 2]})
    assert r["status"] == 6310, r
    r = api.act("tenant_view_reset", sid=root, filters={"tenant_id": b, "field": "ip"})
    assert r["status"] == 0, r
    assert len(b_rows()) == 2


def test_view_changes_are_audited(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")
    api.act("tenant_attribute_view_set", sid=sid, arguments=_view())
    api.act("admin_attribute_view_set", sid=sid, arguments=_view("state", view_type="filter"))
    api.act("tenant_view_reset", sid=sid)
    api.act("admin_view_reset", sid=sid, filters={"field": "nothing"})
    with api_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT action, qvd_object, object_name, status FROM audit_log "
                "WHERE qvd_object IN ('tenant_view', 'admin_view') ORDER BY id"
            )
        ).all()
    a = world.tenants["A"]
    assert [tuple(r) for r in rows] == [
        (
            "tenant_attribute_view_set",
            "tenant_view",
            f"tenant {a}: vm list_column (desktop): name",
            0,
        ),
        ("admin_attribute_view_set", "admin_view", "adminA: vm filter (desktop): state", 0),
        ("tenant_view_reset", "tenant_view", f"tenant {a}: vm list_column (desktop): name", 0),
        ("admin_view_reset", "admin_view", None, 1300),
    ]


def test_views_over_rest(api: Api, world: World) -> None:
    h = api.headers("adminA", "tenantA")
    body = {"qvd_object": "user", "view_type": "filter", "field": "blocked", "visible": True}
    r = api.client.put("/api/v1/views", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {**body, "device_type": "desktop", "property": False}
    page = api.client.get("/api/v1/views", params={"fields": "field,visible"}, headers=h).json()
    assert page == {"total": 1, "rows": [{"field": "blocked", "visible": True}]}
    bad = api.client.put("/api/v1/views", json={**body, "field": "nope"}, headers=h)
    assert (bad.status_code, bad.json()["status"]) == (400, 6320)
    other = api.client.put("/api/v1/views", json={**body, "tenant_id": 1}, headers=h)
    assert (other.status_code, other.json()["status"]) == (403, 4230)
    assert api.client.get("/api/v1/views?tenant_id=1", headers=h).status_code == 403

    mine = {**body, "visible": False}
    assert api.client.put("/api/v1/myviews", json=mine, headers=h).status_code == 200
    rows = api.client.get("/api/v1/myviews", headers=h).json()["rows"]
    assert [(x["source"], x["visible"]) for x in rows] == [("admin", False)]
    gone = api.client.delete("/api/v1/myviews", params={"view_type": "filter"}, headers=h)
    assert gone.status_code == 204
    assert api.client.delete("/api/v1/myviews", headers=h).status_code == 404
    rows = api.client.get("/api/v1/myviews", headers=h).json()["rows"]
    assert [(x["source"], x["visible"]) for x in rows] == [("tenant", True)]

    root = api.headers("root")
    b = world.tenants["B"]
    r = api.client.put("/api/v1/views", json={**body, "tenant_id": b}, headers=root)
    assert r.status_code == 200, r.text
    assert api.client.get(f"/api/v1/views?tenant_id={b}", headers=root).json()["total"] == 1
    r = api.client.delete(
        "/api/v1/views", params={"tenant_id": b, "property": "true"}, headers=root
    )
    assert r.status_code == 404
    r = api.client.delete(
        "/api/v1/views", params={"tenant_id": b, "qvd_object": "user"}, headers=root
    )
    assert r.status_code == 204
    assert api.client.delete("/api/v1/views", headers=h).status_code == 204
    assert api.client.get("/api/v1/views", headers=h).json()["total"] == 0


def test_property_views_go_when_their_key_goes(api: Api, world: World) -> None:
    """Unassigning, renaming or deleting a property key drops the views naming it."""
    sid = api.login("adminA", "tenantA")
    r = api.act(
        "property_create", sid=sid, arguments={"key": "site", "__property_assign__": ["vm", "user"]}
    )
    assert r["status"] == 0, r
    key = r["rows"][0]["id"]
    for obj in ("vm", "user"):
        args = _view("site", qvd_object=obj)
        assert api.act("tenant_property_view_set", sid=sid, arguments=args)["status"] == 0
        assert api.act("admin_property_view_set", sid=sid, arguments=args)["status"] == 0

    def kept() -> tuple[set[str], set[str]]:
        tenant = {x["qvd_object"] for x in _rows(api, sid) if x["property"]}
        mine = _rows(api, sid, "admin_view_get_list", filters={"source": "admin"})
        return tenant, {x["qvd_object"] for x in mine if x["property"]}

    assert kept() == ({"vm", "user"}, {"vm", "user"})
    r = api.act(
        "property_update", sid=sid, filters={"id": key}, arguments={"__property_assign__": ["vm"]}
    )
    assert r["status"] == 0, r
    assert kept() == ({"vm"}, {"vm"})
    r = api.act("property_update", sid=sid, filters={"id": key}, arguments={"key": "location"})
    assert r["status"] == 0, r
    assert kept() == (set(), set())
    args = _view("location")
    assert api.act("tenant_property_view_set", sid=sid, arguments=args)["status"] == 0
    assert api.act("property_delete", sid=sid, filters={"id": key})["status"] == 0
    assert kept() == (set(), set())
