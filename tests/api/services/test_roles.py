"""``number_of_acls_in_role`` (reference §5.3)."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from qvd.db.models import Role
from qvd.db.seed_acls import ALL_ACLS as ACLS
from qvd.db.seed_acls import acls_matching
from tests.api.conftest import Api, World
from tests.api.services.test_properties import _admin, _leaks_b, _ok


# ---- number_of_acls_in_role / number_of_acls_in_admin ------------------------------------
def _role_id(engine: Engine, name: str) -> int:
    with Session(engine) as s:
        role_id = s.scalar(select(Role.id).where(Role.name == name, Role.tenant_id == -1))
        assert role_id is not None
        return int(role_id)


def _count(prefix: str) -> int:
    return sum(1 for a in ACLS if a.startswith(prefix))


def test_number_of_acls_in_role(api: Api, world: World, api_engine: Engine) -> None:
    root = api.login("root")
    root_role, reader = _role_id(api_engine, "Root"), _role_id(api_engine, "VMs Reader")
    both = {"role_id": [root_role, reader], "acl_pattern": ["vm.%", "%"]}
    r = _ok(api.act("number_of_acls_in_role", sid=root, filters=both))
    got = {(row["role_id"], row["acl_pattern"]): (row["total"], row["effective"])
           for row in r["rows"]}  # fmt: skip
    vm_reader = len(acls_matching("vm.", "Reader"))
    assert got == {
        (root_role, "vm.%"): (_count("vm."), _count("vm.")),
        (root_role, "%"): (len(ACLS), len(ACLS)),
        (reader, "vm.%"): (_count("vm."), vm_reader),
        (reader, "%"): (len(ACLS), vm_reader),
    }
    assert [row["role_id"] for row in r["rows"]] == sorted([root_role, reader] * 2)
    default = _ok(api.act("number_of_acls_in_role", sid=root, filters={"role_id": reader}))
    assert default["rows"] == [
        {"role_id": reader, "acl_pattern": "%", "total": len(ACLS), "effective": vm_reader}
    ]
    # a tenant administrator counts without the supertenant's tenant.* and host.* ACLs
    sid = api.login("adminA", "tenantA")
    mine = _ok(api.act("number_of_acls_in_role", sid=sid, filters={"role_id": root_role}))
    hidden = _count("tenant.") + _count("host.")
    assert mine["rows"][0]["total"] == mine["rows"][0]["effective"] == len(ACLS) - hidden
    own = _ok(api.act("number_of_acls_in_role", sid=sid, filters={"role_id": world.roles["A"]}))
    assert own["rows"][0]["effective"] == 0


def test_number_of_acls_in_role_errors(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")
    theirs = api.act("number_of_acls_in_role", sid=sid, filters={"role_id": world.roles["B"]})
    assert theirs["status"] == 1300
    assert not _leaks_b(theirs)
    assert api.act("number_of_acls_in_role", sid=sid)["status"] == 6220
    assert (
        api.act("number_of_acls_in_role", sid=sid, filters={"acl_pattern": "%"})["status"] == 6220
    )
    bad = {"role_id": world.roles["A"], "name": "x"}
    assert api.act("number_of_acls_in_role", sid=sid, filters=bad)["status"] == 6210
    bad = {"role_id": world.roles["A"], "acl_pattern": 3}
    assert api.act("number_of_acls_in_role", sid=sid, filters=bad)["status"] == 6310
    assert api.act("number_of_acls_in_role", sid=sid, filters={"role_id": "x"})["status"] == 6310
    _admin(api_engine, "reader", world.tenants["A"], "Operator L1")
    r = api.act("number_of_acls_in_role", sid=api.login("reader", "tenantA"),
                filters={"role_id": world.roles["A"]})  # fmt: skip
    assert r["status"] == 4210


# ---- deny and lift a deny ----------------------------------------------------------------
def test_assigning_a_denied_acl_lifts_the_deny_and_keeps_inheritance(
    api: Api, world: World, api_engine: Engine
) -> None:
    sid = api.login("root")
    reader = _role_id(api_engine, "VMs Reader")
    arguments = {"name": "lifted", "tenant_id": world.tenants["A"], "__roles__": [reader]}
    role = _ok(api.act("role_create", sid=sid, arguments=arguments))["rows"][0]["id"]

    def acl_map() -> dict[str, list[str]]:
        r = _ok(api.act("role_get_list", sid=sid, filters={"id": role}, fields=["acl_map"]))
        got: dict[str, list[str]] = r["rows"][0]["acl_map"]
        return got

    def change(key: str, name: str) -> None:
        _ok(api.act("role_update", sid=sid, filters={"id": role},
                    arguments={"__acls_changes__": {key: [name]}}))  # fmt: skip

    change("unassign_acls", "vm.see.ip")  # inherited: denied
    assert acl_map()["negative"] == ["vm.see.ip"]
    assert "vm.see.ip" not in acl_map()["positive"]
    change("assign_acls", "vm.see.ip")  # the deny lifted: inherited again, not granted here
    assert acl_map()["negative"] == []
    assert "vm.see.ip" in acl_map()["positive"]
    _ok(api.act("role_update", sid=sid, filters={"id": role},
                arguments={"__roles_changes__": {"unassign_roles": [reader]}}))  # fmt: skip
    assert acl_map()["positive"] == []  # nothing was granted on the role itself
    change("unassign_acls", "user.see-main.")  # not held: nothing to deny
    assert acl_map()["negative"] == []
    change("assign_acls", "user.see-main.")  # not denied: a plain grant
    assert acl_map()["positive"] == ["user.see-main."]
