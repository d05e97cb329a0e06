"""The less common catalogue actions (reference §5.3): property lists per object type,
user and host state, ``mytenant_update``, ACL counts per role and administrator,
``dis_in_staging``; and ``vm_create`` / ``vm_update`` refusing a taken address without
telling whose it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from qvd.api.actions.core import Ctx
from qvd.api.actions.principal import Principal
from qvd.api.errors import Conflict
from qvd.api.services import vms
from qvd.config import Config
from qvd.db.models import Acl, Role, Tenant, Vm, VmRuntime
from qvd.db.seed_acls import ACLS, acls_matching
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


# ---- user_get_state / host_get_state -------------------------------------------------------
def test_user_get_state(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")
    user = world.users["A"]
    r = _ok(api.act("user_get_state", sid=sid, filters={"id": user}))
    assert r["rows"] == [{"id": user, "state": "disconnected"}]
    with Session(api_engine) as s, s.begin():
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == world.vms["A"])
            .values(user_state="connected")
        )
    r = _ok(api.act("user_get_state", sid=sid, filters={"id": user}))
    assert r["rows"] == [{"id": user, "state": "connected"}]
    assert api.act("user_get_state", sid=sid)["status"] == 6220
    theirs = api.act("user_get_state", sid=sid, filters={"id": world.users["B"]})
    assert theirs["status"] == 1300
    assert not _leaks_b(theirs)
    _admin(api_engine, "vmreader", world.tenants["A"], "VMs Reader")
    r = api.act("user_get_state", sid=api.login("vmreader", "tenantA"), filters={"id": user})
    assert r["status"] == 4210


def test_host_get_state(api: Api, world: World) -> None:
    root = api.login("root")
    r = _ok(api.act("host_get_state", sid=root, filters={"id": world.host}))
    assert r["rows"] == [{"id": world.host, "state": "running"}]
    assert api.act("host_get_state", sid=root)["status"] == 6220
    assert api.act("host_get_state", sid=root, filters={"id": 999999})["status"] == 1300
    r = api.act("host_get_state", sid=api.login("adminA", "tenantA"), filters={"id": world.host})
    assert r["status"] == 4210


# ---- mytenant_update -----------------------------------------------------------------------
def _tenant(engine: Engine, tenant_id: int) -> tuple[str, int, str | None]:
    with Session(engine) as s:
        t = s.get_one(Tenant, tenant_id)
        return t.language, t.block, t.description


def test_mytenant_update_changes_only_the_callers_tenant(
    api: Api, world: World, api_engine: Engine
) -> None:
    sid = api.login("adminA", "tenantA")
    b_before = _tenant(api_engine, world.tenants["B"])
    args = {"language": "es", "block": 25, "description": "ours"}
    _ok(api.act("mytenant_update", sid=sid, arguments=args))
    assert _tenant(api_engine, world.tenants["A"]) == ("es", 25, "ours")
    assert _tenant(api_engine, world.tenants["B"]) == b_before
    setup = _ok(api.act("current_admin_setup", sid=sid))["rows"][0]
    assert (setup["tenant_language"], setup["tenant_block"]) == ("es", 25)
    own = api.act("mytenant_update", sid=sid, filters={"id": world.tenants["A"]},
                  arguments={"block": 30})  # fmt: skip
    assert own["status"] == 0
    theirs = api.act("mytenant_update", sid=sid, filters={"id": world.tenants["B"]},
                     arguments={"block": 99})  # fmt: skip
    nobody = api.act("mytenant_update", sid=sid, filters={"id": 999999}, arguments={"block": 99})
    assert (theirs["status"], nobody["status"]) == (6210, 6210)
    assert theirs["message"] == nobody["message"]
    assert _tenant(api_engine, world.tenants["B"]) == b_before


def test_mytenant_update_checks_its_arguments(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")
    assert api.act("mytenant_update", sid=sid)["status"] == 6240
    assert api.act("mytenant_update", sid=sid, arguments={"language": "xx"})["status"] == 6320
    assert api.act("mytenant_update", sid=sid, arguments={"block": 0})["status"] == 6320
    assert api.act("mytenant_update", sid=sid, arguments={"name": "new"})["status"] == 6230
    # QVD Manager holds config.qvd. but not config.wat.
    _admin(api_engine, "qvdmgr", world.tenants["A"], "QVD Manager")
    r = api.act("mytenant_update", sid=api.login("qvdmgr", "tenantA"), arguments={"block": 20})
    assert r["status"] == 4210


@pytest.mark.usefixtures("world")
def test_a_superadmin_sets_the_supertenants_defaults(api: Api, api_engine: Engine) -> None:
    _ok(api.act("mytenant_update", sid=api.login("root"), arguments={"block": 50}))
    assert _tenant(api_engine, 0)[1] == 50


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


# ---- dis_in_staging --------------------------------------------------------------------------
def test_dis_in_staging(api: Api, world: World, config: Config, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")
    assert api.act("dis_in_staging", sid=sid)["status"] == 2230
    staging: Path = config.get_path("path.storage.staging")
    staging.mkdir(parents=True)
    for name in ("b.qcow2", "a.tar.gz", "notes.txt", ".upload-1234", "c.tar.zst"):
        (staging / name).write_bytes(b"x")
    (staging / "dir.tar").mkdir()
    (staging / "link.tar").symlink_to(staging / "a.tar.gz")
    r = _ok(api.act("dis_in_staging", sid=sid))
    assert r["rows"] == [{"name": n} for n in ("a.tar.gz", "b.qcow2", "c.tar.zst", "link.tar")]
    assert r["total"] == 4
    assert api.act("dis_in_staging", sid=sid, filters={"id": 1})["status"] == 6210
    _admin(api_engine, "reader", world.tenants["A"], "Operator L1")
    assert api.act("dis_in_staging", sid=api.login("reader", "tenantA"))["status"] == 4210


# ---- VM addresses ------------------------------------------------------------------------
def _vm_args(world: World, label: str, ip: str | None = None, name: str = "new") -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": name,
        "user_id": world.users[label],
        "osf_id": world.osfs[label],
    }
    if ip is not None:
        args["ip"] = ip
    return args


def test_a_taken_address_is_refused_like_any_unusable_one(api: Api, world: World) -> None:
    root = api.login("root")
    # tenant B's VM takes the first address of the range (10.0.0.100/16 by default)
    b_vm = _ok(api.act("vm_create", sid=root, arguments=_vm_args(world, "B", name="bvm")))
    taken = api.act("vm_get_list", sid=root, filters={"id": b_vm["rows"][0]["id"]}, fields=["ip"])
    assert taken["rows"] == [{"ip": "10.0.0.100"}]

    sid = api.login("adminA", "tenantA")
    messages = {}
    for ip in ("10.0.0.100", "10.0.0.99", "192.168.1.1", "10.0.255.255", "10.3.0.11", "::1"):
        r = api.act("vm_create", sid=sid, arguments=_vm_args(world, "A", ip))
        assert r["status"] == 7200, (ip, r)
        assert not _leaks_b(r)
        assert "bvm" not in r["message"]
        messages[ip] = r["message"].replace(f"address {ip} ", "address <ip> ")
    assert len(set(messages.values())) == 1, messages

    r = api.act("vm_create", sid=sid, arguments=_vm_args(world, "A", "not-an-ip"))
    assert r["status"] == 6320
    _ok(api.act("vm_create", sid=sid, arguments=_vm_args(world, "A", "10.0.0.150")))


def test_vm_update_checks_the_address_the_same_way(api: Api, world: World) -> None:
    root = api.login("root")
    _ok(api.act("vm_create", sid=root, arguments=_vm_args(world, "B", "10.0.0.120", "bvm")))
    sid = api.login("adminA", "tenantA")
    mine = {"id": world.vms["A"]}
    r = api.act("vm_update", sid=sid, filters=mine, arguments={"ip": "10.0.0.120"})
    assert r["status"] == 1200
    failure = r["failures"][str(world.vms["A"])]
    assert failure["status"] == 7200
    assert not _leaks_b(r)
    assert "bvm" not in failure["message"]
    # keeping its own address (even one from before the range) is no change
    _ok(api.act("vm_update", sid=sid, filters=mine, arguments={"ip": "10.3.0.10"}))
    _ok(api.act("vm_update", sid=sid, filters=mine, arguments={"ip": "10.0.0.121"}))
    got = api.act("vm_get_list", sid=sid, filters=mine, fields=["ip"])
    assert got["rows"] == [{"ip": "10.0.0.121"}]


def test_an_address_claimed_meanwhile_reads_as_the_same_refusal(
    world: World, config: Config, api_engine: Engine
) -> None:
    """Two creates racing for one address: the loser's database refusal is worded like
    the check it passed a moment before."""
    principal = Principal(admin_id=1, admin_name="adminA", tenant_id=world.tenants["A"],
                          tenant_name="tenantA", acls=frozenset())  # fmt: skip
    with Session(api_engine) as s, s.begin():
        ctx = Ctx(session=s, principal=principal, config=config, engine=api_engine)
        s.add(Vm(name="late", user_id=world.users["A"], osf_id=world.osfs["A"], ip="10.3.0.11"))
        with pytest.raises(Conflict) as caught:
            vms._flush(ctx, "10.3.0.11")
        assert caught.value.code == 7200
        assert caught.value.message == vms._unavailable(ctx, "10.3.0.11").message


def test_hosts_carry_values_of_supertenant_keys(api: Api, world: World) -> None:
    """Hosts belong to no tenant: a superadmin registers their keys in the supertenant
    (0), assigns them to hosts, and sets values on a host."""
    root = api.login("root")
    key = _ok(api.act("property_create", sid=root, arguments={
        "key": "rack", "tenant_id": 0, "__property_assign__": ["host"],
    }))["rows"][0]["id"]  # fmt: skip
    _ok(api.act("host_update", sid=root, filters={"id": world.host},
                arguments={"__properties_changes__": {"set": {"rack": "r12"}}}))  # fmt: skip
    got = api.act("host_get_list", sid=root, filters={"id": world.host}, fields=["properties"])
    assert got["rows"] == [{"properties": {"rack": "r12"}}]
    r = api.act("host_update", sid=root, filters={"id": world.host},
                arguments={"__properties_changes__": {"set": {"nokey": "x"}}})  # fmt: skip
    assert r["status"] in (1200, 6330), r
    _ok(api.act("host_update", sid=root, filters={"id": world.host},
                arguments={"__properties_changes__": {"delete": ["rack"]}}))  # fmt: skip
    _ok(api.act("property_delete", sid=root, filters={"id": key}))
    # a tenant administrator cannot register keys in the supertenant
    r = api.act("property_create", sid=api.login("adminA", "tenantA"),
                arguments={"key": "rack", "tenant_id": 0})  # fmt: skip
    assert r["status"] == 4230
