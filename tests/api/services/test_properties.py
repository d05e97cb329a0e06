"""Property lists per object type (``<object>_get/create/delete_property_list``, reference
§5.3): tenant scoping, filters, order and paging, host lists for superadmins, ACLs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.api.conftest import Api, World, add_admin

OBJECTS = ("vm", "user", "osf", "di")


def _admin(engine: Engine, name: str, tenant_id: int, role: str) -> None:
    with Session(engine) as s, s.begin():
        add_admin(s, name, tenant_id, role)


def _ok(r: dict[str, Any]) -> dict[str, Any]:
    assert r["status"] == 0, r
    return r


def _leaks_b(r: dict[str, Any]) -> bool:
    text = repr(r)
    return any(w in text for w in ("tenantB", "vmB", "userb", "osfB", "propB", "adminB", "roleB"))


# ---- <obj>_get/create/delete_property_list ------------------------------------------------
@pytest.mark.parametrize("obj", OBJECTS)
def test_property_list_assigns_lists_and_unassigns(obj: str, api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    prop = world.props["A"]
    assert _ok(api.act(f"{obj}_get_property_list", sid=sid))["rows"] == []

    created = _ok(api.act(f"{obj}_create_property_list", sid=sid, arguments={"property_id": prop}))
    assignment = created["rows"][0]["id"]
    rows = _ok(api.act(f"{obj}_get_property_list", sid=sid))["rows"]
    assert rows == [
        {"id": assignment, "property_id": prop, "key": "propA", "description": None,
         "qvd_object": obj}
    ]  # fmt: skip
    others = [o for o in OBJECTS if o != obj]
    for other in others:
        assert _ok(api.act(f"{other}_get_property_list", sid=sid))["rows"] == []

    again = api.act(f"{obj}_create_property_list", sid=sid, arguments={"property_id": prop})
    assert again["status"] == 7210, again

    _ok(api.act(f"{obj}_delete_property_list", sid=sid, filters={"property_id": prop}))
    assert _ok(api.act(f"{obj}_get_property_list", sid=sid))["rows"] == []
    gone = api.act(f"{obj}_delete_property_list", sid=sid, filters={"id": assignment})
    assert gone["status"] == 1300, gone


def test_property_list_refuses_other_tenants_properties_alike(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    theirs = api.act(
        "vm_create_property_list", sid=sid, arguments={"property_id": world.props["B"]}
    )
    missing = api.act("vm_create_property_list", sid=sid, arguments={"property_id": 999999})
    assert (theirs["status"], missing["status"]) == (7110, 7110)
    assert theirs["message"].replace(str(world.props["B"]), "N") == missing["message"].replace(
        "999999", "N"
    )
    assert not _leaks_b(theirs)


@pytest.mark.parametrize("obj", OBJECTS)
def test_a_superadmin_reaches_every_tenants_assignments(obj: str, api: Api, world: World) -> None:
    """The requests the isolation test sends as tenant A do act for a superadmin."""
    root = api.login("root")
    prop = world.props["B"]
    _ok(api.act(f"{obj}_create_property_list", sid=root, arguments={"property_id": prop}))
    r = _ok(api.act(f"{obj}_get_property_list", sid=root, filters={"property_id": prop}))
    assert [row["key"] for row in r["rows"]] == ["propB"]
    _ok(api.act(f"{obj}_delete_property_list", sid=root, filters={"property_id": prop}))
    assert _ok(api.act(f"{obj}_get_property_list", sid=root))["rows"] == []


def test_property_list_arguments_and_filters(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    assert api.act("vm_create_property_list", sid=sid)["status"] == 6240
    r = api.act("vm_create_property_list", sid=sid, arguments={"property_id": "x"})
    assert r["status"] == 6320
    r = api.act(
        "vm_create_property_list", sid=sid, arguments={"property_id": world.props["A"], "x": 1}
    )
    assert r["status"] == 6230
    assert api.act("vm_delete_property_list", sid=sid)["status"] == 6220
    assert api.act("vm_get_property_list", sid=sid, filters={"nope": 1})["status"] == 6210
    assert api.act("vm_get_property_list", sid=sid, fields=["tenant_id"])["status"] == 4250


def test_property_list_scope_order_and_paging(api: Api, world: World) -> None:
    root = api.login("root")
    for key in ("k1", "k2", "k3"):
        _ok(api.act("property_create", sid=root,
                    arguments={"key": key, "tenant_id": world.tenants["A"],
                               "__property_assign__": ["vm"]}))  # fmt: skip
    _ok(api.act("property_create", sid=root,
                arguments={"key": "kb", "tenant_id": world.tenants["B"],
                           "__property_assign__": ["vm"]}))  # fmt: skip
    sid = api.login("adminA", "tenantA")
    r = _ok(api.act("vm_get_property_list", sid=sid, order_by={"field": "key", "order": "-desc"},
                    block=2, offset=1, fields=["key"]))  # fmt: skip
    assert (r["total"], r["rows"]) == (3, [{"key": "k3"}, {"key": "k2"}])
    r = _ok(api.act("vm_get_property_list", sid=sid, filters={"key": {"~": "k%"}}, fields=["key"]))
    assert {row["key"] for row in r["rows"]} == {"k1", "k2", "k3"}
    # superadmins see every tenant's, with the tenant fields
    r = _ok(api.act("vm_get_property_list", sid=root, filters={"tenant_id": world.tenants["B"]},
                    fields=["key", "tenant_name"]))  # fmt: skip
    assert r["rows"] == [{"key": "kb", "tenant_name": "tenantB"}]
    # a tenant administrator cannot reach tenant B's assignment
    b_assignment = _ok(api.act("vm_get_property_list", sid=root, filters={"key": "kb"}))["rows"]
    r = api.act("vm_delete_property_list", sid=sid, filters={"id": b_assignment[0]["property_id"]})
    assert r["status"] == 1300
    assert not _leaks_b(r)


def test_deleting_an_assignment_drops_the_values_it_carried(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    prop = world.props["A"]
    _ok(api.act("vm_create_property_list", sid=sid, arguments={"property_id": prop}))
    _ok(api.act("vm_update", sid=sid, filters={"id": world.vms["A"]},
                arguments={"__properties_changes__": {"set": {"propA": "v"}}}))  # fmt: skip
    row = api.act("vm_get_list", sid=sid, filters={"id": world.vms["A"]}, fields=["properties"])
    assert row["rows"] == [{"properties": {"propA": "v"}}]
    _ok(api.act("vm_delete_property_list", sid=sid, filters={"property_id": prop}))
    row = api.act("vm_get_list", sid=sid, filters={"id": world.vms["A"]}, fields=["properties"])
    assert row["rows"] == [{"properties": {}}]


def test_host_property_lists_are_for_superadmins(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    prop = world.props["A"]
    for action, body in (
        ("host_get_property_list", {}),
        ("host_create_property_list", {"arguments": {"property_id": prop}}),
        ("host_delete_property_list", {"filters": {"property_id": prop}}),
    ):
        assert api.act(action, sid=sid, **body)["status"] == 4210, action
    root = api.login("root")
    new = _ok(api.act("host_create_property_list", sid=root, arguments={"property_id": prop}))
    rows = _ok(api.act("host_get_property_list", sid=root, fields=["id", "key"]))["rows"]
    assert rows == [{"id": new["rows"][0]["id"], "key": "propA"}]
    _ok(api.act("host_delete_property_list", sid=root, filters={"id": new["rows"][0]["id"]}))


def test_tenant_admins_cannot_assign_properties_to_hosts(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    r = api.act("property_create", sid=sid, arguments={"key": "h", "__property_assign__": ["host"]})
    assert r["status"] == 4230
    new = _ok(api.act("property_create", sid=sid, arguments={"key": "all"}))["rows"][0]["id"]
    got = api.act("property_get_list", sid=sid, filters={"id": new}, fields=["objects"])
    assert sorted(got["rows"][0]["objects"]) == sorted(OBJECTS)
    # and a superadmin's host assignment survives the tenant admin's reassignment
    root = api.login("root")
    _ok(api.act("host_create_property_list", sid=root, arguments={"property_id": new}))
    _ok(api.act("property_update", sid=sid, filters={"id": new},
                arguments={"__property_assign__": ["vm"]}))  # fmt: skip
    got = api.act("property_get_list", sid=root, filters={"id": new}, fields=["objects"])
    assert sorted(got["rows"][0]["objects"]) == ["host", "vm"]


def test_property_list_acls(api: Api, world: World, api_engine: Engine) -> None:
    # Operator L1 (QVD Reader): sees VM properties, holds no property.* ACL
    _admin(api_engine, "reader", world.tenants["A"], "Operator L1")
    sid = api.login("reader", "tenantA")
    _ok(api.act("vm_get_property_list", sid=sid))
    r = api.act("vm_create_property_list", sid=sid, arguments={"property_id": world.props["A"]})
    assert r["status"] == 4210
    assert api.act("vm_delete_property_list", sid=sid, filters={"id": 1})["status"] == 4210
    # WAT Config Manager holds neither property.* nor <obj>.see.properties
    _admin(api_engine, "watcfg", world.tenants["A"], "WAT Config Manager")
    assert api.act("osf_get_property_list", sid=api.login("watcfg", "tenantA"))["status"] == 4210
