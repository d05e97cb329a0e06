"""``number_of_acls_in_admin`` (reference §5.3)."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from qvd.db.models import Acl
from tests.api.conftest import Api, World
from tests.api.services.test_properties import _admin, _leaks_b, _ok
from tests.api.services.test_roles import _count


def test_number_of_acls_in_admin(api: Api, world: World, api_engine: Engine) -> None:
    root = api.login("root")
    with Session(api_engine) as s:
        recovery_acls = s.scalar(
            select(func.count()).select_from(Acl).where(Acl.name.like("administrator.%"))
        )
    patterns = ["host.%", "administrator.%", "vm.%"]
    ids = {"admin_id": [world.admins["A"], 0], "acl_pattern": patterns}
    r = _ok(api.act("number_of_acls_in_admin", sid=root, filters=ids))
    got = {(row["admin_id"], row["acl_pattern"]): (row["total"], row["effective"])
           for row in r["rows"]}  # fmt: skip
    assert got == {
        # a tenant administrator with Root uses no host.* ACL
        (world.admins["A"], "host.%"): (_count("host."), 0),
        (world.admins["A"], "administrator.%"): (_count("administrator."),) * 2,
        (world.admins["A"], "vm.%"): (_count("vm."),) * 2,
        # the recovery administrator has no role but its own ACLs
        (0, "host.%"): (_count("host."), 0),
        (0, "administrator.%"): (recovery_acls, recovery_acls),
        (0, "vm.%"): (_count("vm."), 0),
    }
    sid = api.login("adminA", "tenantA")
    theirs = api.act("number_of_acls_in_admin", sid=sid, filters={"admin_id": world.admins["B"]})
    assert theirs["status"] == 1300
    assert not _leaks_b(theirs)
    assert api.act("number_of_acls_in_admin", sid=sid, filters={"role_id": 1})["status"] == 6220
    _admin(api_engine, "reader", world.tenants["A"], "Operator L1")
    r = api.act("number_of_acls_in_admin", sid=api.login("reader", "tenantA"),
                filters={"admin_id": world.admins["A"]})  # fmt: skip
    assert r["status"] == 4210


def test_an_administrator_shows_who_created_it(api: Api, world: World) -> None:
    sid = api.login("root")
    arguments = {"name": "made-by-root", "password": "pw-made-1", "tenant_id": world.tenants["A"]}
    new = _ok(api.act("administrator_create", sid=sid, arguments=arguments))["rows"][0]["id"]
    fields = ["id", "creation_admin_id", "creation_admin_name"]
    r = _ok(api.act("administrator_get_list", sid=sid, filters={"id": new}, fields=fields))
    assert r["rows"][0]["creation_admin_name"] == "root"
    assert isinstance(r["rows"][0]["creation_admin_id"], int)
    role = _ok(
        api.act("role_create", sid=sid, arguments={"name": "r1", "tenant_id": world.tenants["A"]})
    )["rows"][0]["id"]
    r = _ok(api.act("role_get_list", sid=sid, filters={"id": role}, fields=["creation_admin_name"]))
    assert r["rows"][0]["creation_admin_name"] == "root"
