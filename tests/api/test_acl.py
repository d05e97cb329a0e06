"""ACLs: every action, filter, field, argument and order field needs its ACL; roles
inherit; a deny on a role beats what it inherits; built-in roles; the recovery
administrator (reference §5.4-5.6)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from qvd.db.models import Administrator
from tests.api.conftest import PASSWORD, Api, World, add_admin


def _admin_with_role(
    api: Api, world: World, role: str, acls: list[str], inherits: list[str] | None = None
) -> str:
    sid = api.login("root")
    r = api.act(
        "role_create",
        sid=sid,
        arguments={
            "name": role,
            "tenant_id": world.tenants["A"],
            "__acls__": acls,
            "__roles__": inherits or [],
        },
    )
    assert r["status"] == 0, r
    r = api.act(
        "administrator_create",
        sid=sid,
        arguments={
            "name": f"adm-{role}",
            "password": PASSWORD,
            "tenant_id": world.tenants["A"],
            "__roles__": [role],
        },
    )
    assert r["status"] == 0, r
    return api.login(f"adm-{role}", "tenantA")


def test_a_role_without_the_action_acl_is_refused(api: Api, world: World) -> None:
    sid = _admin_with_role(api, world, "readers", ["vm.see-main.", "vm.see.id"])
    assert api.act("vm_get_list", sid=sid)["status"] == 0
    r = api.act("vm_start", sid=sid, filters={"id": world.vms["A"]})
    assert r["status"] == 4210
    assert "vm.update.state" in r["message"]
    assert api.act("user_get_list", sid=sid)["status"] == 4210


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"fields": ["ip"]}, 4250),
        ({"filters": {"ip": "10.3.0.10"}}, 4220),
        ({"order_by": {"field": ["host_name"], "order": "-asc"}}, 4260),
    ],
)
def test_fields_filters_and_order_need_their_see_acl(
    api: Api, world: World, body: dict[str, Any], status: int
) -> None:
    sid = _admin_with_role(api, world, "narrow", ["vm.see-main.", "vm.see.id"])
    r = api.act("vm_get_list", sid=sid, **body)
    assert r["status"] == status, r
    default = api.act("vm_get_list", sid=sid)["rows"][0]
    assert "ip" not in default
    assert "name" in default
    assert "id" in default


def test_arguments_need_their_update_acl(api: Api, world: World) -> None:
    sid = _admin_with_role(api, world, "blockers", ["vm.see-main.", "vm.see.id", "vm.update.block"])
    ok = api.act("vm_update", sid=sid, filters={"id": world.vms["A"]}, arguments={"blocked": True})
    assert ok["status"] == 0
    r = api.act("vm_update", sid=sid, filters={"id": world.vms["A"]}, arguments={"name": "x"})
    assert r["status"] == 1200
    assert r["failures"][str(world.vms["A"])]["status"] == 4230


def test_deny_beats_inherited_allow(api: Api, world: World) -> None:
    sid = api.login("root")
    r = api.act(
        "role_create",
        sid=sid,
        arguments={
            "name": "ops",
            "tenant_id": world.tenants["A"],
            "__roles__": ["VMs Operator", "VMs Reader"],
        },
    )
    role_id = r["rows"][0]["id"]
    api.act(
        "administrator_create",
        sid=sid,
        arguments={
            "name": "op",
            "password": PASSWORD,
            "tenant_id": world.tenants["A"],
            "__roles__": [role_id],
        },
    )
    op = api.login("op", "tenantA")
    assert api.act("vm_start", sid=op, filters={"id": world.vms["A"]})["status"] == 0
    r = api.act(
        "role_update",
        sid=sid,
        filters={"id": role_id},
        arguments={"__acls_changes__": {"unassign_acls": ["vm.update.state"]}},
    )
    assert r["status"] == 0, r
    acls = api.act(
        "get_acls_in_roles", sid=sid, filters={"role_id": role_id, "name": {"~": "vm.update.%"}}
    )
    names = {row["name"] for row in acls["rows"]}
    assert "vm.update.state" not in names
    assert "vm.update.block" in names
    r = api.act("vm_stop", sid=op, filters={"id": world.vms["A"]})
    assert r["status"] == 4210  # the ACL cache is cleared by role changes
    api.act(
        "role_update",
        sid=sid,
        filters={"id": role_id},
        arguments={"__acls_changes__": {"assign_acls": ["vm.update.state"]}},
    )
    assert api.act("vm_stop", sid=op, filters={"id": world.vms["A"]})["status"] == 0


def test_built_in_roles_cannot_change_and_cycles_are_refused(api: Api, world: World) -> None:
    sid = api.login("root")
    r = api.act("role_update", sid=sid, filters={"name": "Root"}, arguments={"name": "x"})
    assert r["failures"]
    assert next(iter(r["failures"].values()))["status"] == 4210
    a = api.act("role_create", sid=sid, arguments={"name": "a", "tenant_id": 1})["rows"][0]["id"]
    b = api.act("role_create", sid=sid, arguments={"name": "b", "tenant_id": 1, "__roles__": [a]})
    r = api.act(
        "role_update",
        sid=sid,
        filters={"id": a},
        arguments={"__roles_changes__": {"assign_roles": [b["rows"][0]["id"]]}},
    )
    assert next(iter(r["failures"].values()))["status"] == 7350


def test_tenant_admins_never_hold_tenant_or_host_acls(api: Api, world: World) -> None:
    setup = api.act("current_admin_setup", sid=api.login("adminA", "tenantA"))["rows"][0]
    assert not [a for a in setup["acls"] if a.startswith(("tenant.", "host."))]
    assert "vm.update.state" in setup["acls"]
    sid = api.login("adminA", "tenantA")
    assert api.act("host_get_list", sid=sid)["status"] == 4210
    assert api.act("tenant_get_list", sid=sid)["status"] == 4210
    listed = api.act("acl_get_list", sid=sid, filters={"name": {"~": "tenant.%"}})
    assert listed["total"] == 0


def test_the_recovery_admin_can_repair_roles(api: Api, world: World, api_engine: Engine) -> None:
    from qvd.db import hash_password

    with Session(api_engine) as s, s.begin():
        s.execute(
            update(Administrator)
            .where(Administrator.id == 0)
            .values(password=hash_password("recover"))
        )
    sid = api.login("batman", "*", password="recover")
    setup = api.act("current_admin_setup", sid=sid)["rows"][0]
    assert "role.update.assign-acl" in setup["acls"]
    assert "administrator.create." in setup["acls"]
    assert "vm.update.state" not in setup["acls"]
    assert api.act("administrator_get_list", sid=sid)["status"] == 0


def test_monotenant_mode_needs_no_tenant_and_hides_superadmins(
    api: Api, world: World, api_engine: Engine
) -> None:
    sid = api.login("root")
    r = api.act("config_set", sid=sid, arguments={"key": "wat.multitenant", "value": "0"})
    assert r["status"] == 7373  # two tenants besides 'default'
    r = api.act("config_set", sid=sid, arguments={"key": "wat.multitenant", "value": " "})
    assert r["status"] == 7373  # blank reads as false too
    with Session(api_engine) as s, s.begin():
        add_admin(s, "solo", 1)
    r = api.act("tenant_delete", sid=sid, filters={"id": [world.tenants["A"], world.tenants["B"]]})
    assert r["status"] == 1200  # not empty
    from sqlalchemy import text

    with api_engine.begin() as conn:
        conn.execute(text("DELETE FROM vms"))
        conn.execute(text("DELETE FROM tenants WHERE id >= 10000"))
    assert (
        api.act("config_set", sid=sid, arguments={"key": "wat.multitenant", "value": "0"})["status"]
        == 0
    )
    assert api.client.post("/api/info", json={}).json()["multitenant"] == 0
    r = api.act("user_get_list", login="solo", password=PASSWORD)
    assert r["status"] == 0
    r = api.act("user_get_list", login="root", password=PASSWORD, tenant="*")
    assert r["status"] == 3200
