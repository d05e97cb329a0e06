"""Contract: the answer shapes QVD's WAT and ``qa4`` read from ``POST /api``
(real-clients.md D and C, reference §5.3), field by field, against a real API and
PostgreSQL. Expected values come from the rows each test writes (or reads back from
the database with its own SQL), never from the code under test.

Booleans are compared with ``== 0`` / ``== 1`` so that the checks hold whether the face
sends JSON booleans or QVD's 0/1.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from qvd.api.faces.qvdshape import remaining_time
from qvd.config import TOKENS
from qvd.config.tokens import is_node_local
from qvd.db.models import (
    Acl,
    AclRoleRelation,
    AuditLog,
    Config,
    DiRuntime,
    DiTag,
    Host,
    HostRuntime,
    Role,
    RoleRoleRelation,
    User,
    VmRuntime,
)
from tests.api.conftest import Api, World
from tests.api.faces.test_ws import Server, server  # noqa: F401 (the TLS server fixture)


def _ok(r: dict[str, Any]) -> dict[str, Any]:
    assert r["status"] == 0, r
    return r


def _now(engine: Engine) -> dt.datetime:
    with engine.connect() as c:
        now: dt.datetime = c.scalar(text("SELECT now()"))
    return now


# ---- dashboard ----------------------------------------------------------------------------
def test_statistics_at_the_top_level(api: Api, world: World, api_engine: Engine) -> None:
    now = _now(api_engine)
    expires = now + dt.timedelta(days=2, hours=3, minutes=30)
    with Session(api_engine) as s, s.begin():
        node2 = Host(name="node2", address="node2.nodes.test")
        s.add(node2)
        s.flush()
        s.execute(update(HostRuntime).where(HostRuntime.host_id == node2.id).values(blocked=True))
        s.execute(update(User).where(User.id == world.users["B"]).values(blocked=True))
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == world.vms["A"])
            .values(vm_state="running", host_id=world.host, user_state="connected",
                    vm_expiration_hard=expires)
        )  # fmt: skip
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == world.vms["B"])
            .values(blocked=True, vm_expiration_hard=now - dt.timedelta(hours=1))
        )
        s.execute(text("UPDATE dis SET blocked = true WHERE id = :d"), {"d": world.dis["A"]})
        node2_id = node2.id

    body = _ok(api.act("qvd_objects_statistics", sid=api.login("root")))
    counts = {
        "users_count": 2, "blocked_users_count": 1, "connected_users_count": 1,
        "vms_count": 2, "blocked_vms_count": 1, "running_vms_count": 1,
        "hosts_count": 2, "blocked_hosts_count": 1, "running_hosts_count": 1,
        "osfs_count": 2, "dis_count": 2, "blocked_dis_count": 1,
    }  # fmt: skip
    for key, value in counts.items():
        assert body[key] == value, key
    assert body["top_populated_hosts"] == [
        {"id": world.host, "name": "node1", "number_of_vms": 1},
        {"id": node2_id, "name": "node2", "number_of_vms": 0},
    ]
    [vm] = body["vms_with_expiration_date"]  # vmB's date has passed
    assert vm["id"] == world.vms["A"]
    assert vm["name"] == "vmA"
    assert dt.datetime.fromisoformat(vm["expiration"]) == expires
    left = vm["remaining_time"]
    assert (left["months"], left["days"], left["hours"], left["expired"]) == (0, 2, 3, 0)
    assert left["minutes"] in (29, 30)

    # a tenant administrator: its tenant only, and no host statistics at all
    body = _ok(api.act("qvd_objects_statistics", sid=api.login("adminA", "tenantA")))
    assert (body["users_count"], body["vms_count"], body["running_vms_count"]) == (1, 1, 1)
    assert (body["blocked_users_count"], body["blocked_dis_count"]) == (0, 1)
    assert not [k for k in body if k.startswith(("hosts_", "running_hosts", "top_"))]


# ---- ACL tree -----------------------------------------------------------------------------
def _acls_like(engine: Engine, pattern: str) -> int:
    with engine.connect() as c:
        n: int = c.scalar(select(text("count(*)")).select_from(Acl).where(Acl.name.like(pattern)))
    return n


def test_acl_counts_keyed_by_pattern(api: Api, world: World, api_engine: Engine) -> None:
    granted = ["vm.see.ip", "vm.see.mac", "user.see.id"]
    with Session(api_engine) as s, s.begin():
        for name in granted:
            acl_id = s.scalar(select(Acl.id).where(Acl.name == name))
            s.add(AclRoleRelation(role_id=world.roles["A"], acl_id=acl_id, positive=True))
    sid = api.login("root")
    body = _ok(api.act(
        "number_of_acls_in_role", sid=sid,
        filters={"role_id": str(world.roles["A"]), "acl_pattern": ["vm.%", "user.%", "%.see.ip"]},
    ))  # fmt: skip
    assert body["vm.%"] == {"total": _acls_like(api_engine, "vm.%"), "effective": 2}
    assert body["user.%"] == {"total": _acls_like(api_engine, "user.%"), "effective": 1}
    assert body["%.see.ip"] == {"total": _acls_like(api_engine, "%.see.ip"), "effective": 1}

    # a whole branch: adminA holds Root, i.e. every ACL but the supertenant's
    body = _ok(api.act(
        "number_of_acls_in_admin", sid=sid,
        filters={"admin_id": str(world.admins["A"]), "acl_pattern": ["vm.%", "host.%"]},
    ))  # fmt: skip
    vm_total = _acls_like(api_engine, "vm.%")
    assert body["vm.%"] == {"total": vm_total, "effective": vm_total}
    assert body["host.%"] == {"total": _acls_like(api_engine, "host.%"), "effective": 0}

    # the WAT's role list asks with the id as a number and the pattern "%"
    body = _ok(api.act(
        "number_of_acls_in_role", sid=sid,
        filters={"role_id": world.roles["A"], "acl_pattern": ["%"]},
    ))  # fmt: skip
    assert body["%"]["effective"] == len(granted)


# ---- roles --------------------------------------------------------------------------------
def _role_id(engine: Engine, name: str) -> int:
    with engine.connect() as c:
        found: int = c.scalar(select(Role.id).where(Role.name == name, Role.tenant_id == -1))
    return found


def _inherited_acls(engine: Engine, role_id: int) -> set[str]:
    sql = text(
        "WITH RECURSIVE r(id) AS (SELECT CAST(:r AS int) UNION "
        "SELECT rr.inherited_id FROM role_role_relations rr JOIN r ON rr.inheritor_id = r.id) "
        "SELECT DISTINCT a.name FROM acl_role_relations ar JOIN r ON ar.role_id = r.id "
        "JOIN acls a ON a.id = ar.acl_id WHERE ar.positive"
    )
    with engine.connect() as c:
        return set(c.scalars(sql, {"r": role_id}))


def test_roles_are_objects_keyed_by_id(api: Api, world: World, api_engine: Engine) -> None:
    reader = _role_id(api_engine, "VMs Reader")
    with Session(api_engine) as s, s.begin():
        s.add(RoleRoleRelation(inheritor_id=world.roles["A"], inherited_id=reader))
        ip = s.scalar(select(Acl.id).where(Acl.name == "vm.see.ip"))
        s.add(AclRoleRelation(role_id=world.roles["A"], acl_id=ip, positive=False))
    sid = api.login("root")

    [admin] = _ok(api.act("administrator_get_list", sid=sid, filters={"id": world.admins["A"]}))[
        "rows"
    ]
    assert admin["roles"] == {str(_role_id(api_engine, "Root")): "Root"}
    [admin] = _ok(api.act("administrator_get_details", sid=sid, filters={"id": world.admins["A"]},
                          fields=["id", "roles", "name"]))["rows"]  # fmt: skip
    assert list(admin) == ["id", "roles", "name"]
    assert admin["roles"] == {str(_role_id(api_engine, "Root")): "Root"}

    expected_positive = sorted(_inherited_acls(api_engine, reader) - {"vm.see.ip"})
    for action in ("role_get_list", "role_get_details"):
        [role] = _ok(api.act(action, sid=sid, filters={"id": world.roles["A"]}))["rows"]
        assert role["name"] == "roleA"
        assert role["roles"] == {str(reader): {"id": reader, "name": "VMs Reader"}}
        assert sorted(role["acls"]["positive"]) == expected_positive
        assert role["acls"]["negative"] == ["vm.see.ip"]


# ---- DIs ----------------------------------------------------------------------------------
def test_di_tags_string_in_lists_objects_in_details(
    api: Api, world: World, api_engine: Engine
) -> None:
    with Session(api_engine) as s, s.begin():
        runtime = update(DiRuntime).where(DiRuntime.di_id == world.dis["A"])
        s.execute(runtime.values(elapsed_time=42))
        tags = s.execute(
            select(DiTag.id, DiTag.tag, DiTag.fixed)
            .where(DiTag.di_id == world.dis["A"])
            .order_by(DiTag.id)
        ).all()
    sid = api.login("adminA", "tenantA")
    [row] = _ok(api.act("di_get_list", sid=sid))["rows"]
    assert isinstance(row["tags"], str)
    assert sorted(row["tags"].split(",")) == sorted(t.tag for t in tags)
    assert row["elapsed_time"] == 42

    [row] = _ok(api.act("di_get_details", sid=sid, filters={"id": world.dis["A"]}))["rows"]
    assert row["tags"] == [{"id": i, "tag": tag, "fixed": fixed} for i, tag, fixed in tags]
    assert row["disk_image"] == "imageA.tar"
    assert "tag_objects" not in row

    assert _ok(api.act("di_tiny_list", sid=sid))["rows"] == [
        {"id": world.dis["A"], "name": "imageA.tar"}
    ]
    rows = _ok(api.act("tag_tiny_list", sid=sid, order_by={"field": ["id"], "order": "-asc"}))
    assert rows["rows"] == [{"id": i, "name": tag} for i, tag, _fixed in tags]


# ---- VMs: live fields -----------------------------------------------------------------------
def test_vm_time_until_expiration(api: Api, world: World, api_engine: Engine) -> None:
    soft = _now(api_engine) + dt.timedelta(days=1, hours=2, minutes=3, seconds=30)
    with Session(api_engine) as s, s.begin():
        runtime = update(VmRuntime).where(VmRuntime.vm_id == world.vms["A"])
        s.execute(runtime.values(vm_expiration_soft=soft))
    fields = ["id", "expiration_soft", "time_until_expiration_soft", "time_until_expiration_hard"]
    for action in ("vm_get_list", "vm_get_details"):
        [row] = _ok(api.act(action, sid=api.login("root"), filters={"id": world.vms["A"]},
                            fields=fields))["rows"]  # fmt: skip
        assert dt.datetime.fromisoformat(row["expiration_soft"]) == soft
        left = row["time_until_expiration_soft"]
        assert {k: left[k] for k in ("months", "days", "hours", "minutes", "expired")} == {
            "months": 0, "days": 1, "hours": 2, "minutes": 3, "expired": 0,
        }  # fmt: skip
        assert 0 <= left["seconds"] <= 30
        assert row["time_until_expiration_hard"] is None


@pytest.mark.parametrize(
    ("start", "seconds", "expected"),
    [
        # Jan 31 + one calendar month is Feb 29 (leap year, day clamped)
        ("2024-01-31T00:00:00+00:00", 29 * 86400, (1, 0, 0, 0, 0, 0)),
        ("2024-01-15T00:00:00+00:00", 45 * 86400 + 3723, (1, 14, 1, 2, 3, 0)),
        ("2024-03-01T12:00:00+00:00", 400 * 86400, (13, 4, 0, 0, 0, 0)),
        ("2024-03-01T12:00:00+00:00", -5, (0, 0, 0, 0, 0, 1)),
    ],
)
def test_remaining_time_breakdown(start: str, seconds: int, expected: tuple[int, ...]) -> None:
    left = remaining_time(seconds, dt.datetime.fromisoformat(start))
    assert left is not None
    keys = ("months", "days", "hours", "minutes", "seconds", "expired")
    assert tuple(left[k] for k in keys) == expected


# ---- logs ---------------------------------------------------------------------------------
def test_log_rows_and_filter_lists(api: Api, world: World, api_engine: Engine) -> None:
    now = _now(api_engine)
    with Session(api_engine) as s, s.begin():
        kept = AuditLog(
            administrator_id=world.admins["A"], administrator_name="adminA",
            tenant_id=world.tenants["A"], tenant_name="tenantA", action="vm_update",
            type_of_action="update", arguments={"arguments": {"blocked": 1}}, qvd_object="vm",
            object_id=world.vms["A"], object_name="vmA", time=now - dt.timedelta(hours=1),
            status=0, source="WAT", ip="127.0.0.1",
        )  # fmt: skip
        gone = AuditLog(
            administrator_id=424242, administrator_name="ghost", tenant_id=world.tenants["A"],
            tenant_name="tenantA", action="user_delete", type_of_action="delete",
            qvd_object="user", object_id=434343, object_name="nobody", time=now, status=0,
            source="CLI",
        )  # fmt: skip
        s.add_all([kept, gone])
        s.flush()
        kept_id, gone_id = kept.id, gone.id
    sid = api.login("root")
    fields = ["id", "admin_id", "admin_name", "antiquity", "object_deleted", "admin_deleted",
              "arguments"]  # fmt: skip
    [row] = _ok(api.act("log_get_list", sid=sid, filters={"id": kept_id}, fields=fields))["rows"]
    assert (row["admin_id"], row["admin_name"]) == (world.admins["A"], "adminA")
    assert 3600 <= row["antiquity"] <= 3600 + 120
    assert row["object_deleted"] == 0
    assert row["admin_deleted"] == 0
    assert isinstance(row["arguments"], str)
    assert json.loads(row["arguments"]) == {"arguments": {"blocked": 1}}

    [row] = _ok(api.act("log_get_details", sid=sid, filters={"id": gone_id}))["rows"]
    assert (row["admin_id"], row["admin_name"]) == (424242, "ghost")
    assert row["object_deleted"] == 1
    assert row["admin_deleted"] == 1
    assert 0 <= row["antiquity"] <= 120

    # the WAT's administrator filter
    rows = _ok(api.act("log_get_list", sid=sid, filters={"admin_id": 424242}))["rows"]
    assert [r["id"] for r in rows] == [gone_id]

    with api_engine.connect() as c:
        sources = sorted(c.scalars(text("SELECT DISTINCT source FROM audit_log "
                                        "WHERE source IS NOT NULL")))  # fmt: skip
        enum = "SELECT unnest(enum_range(NULL::{}))"
        actions = sorted(c.scalars(text(enum.format("log_type_of_action_enum"))))
        objects = sorted(c.scalars(text(enum.format("log_qvd_object_enum"))))
    assert {"CLI", "WAT"} <= set(sources)
    for action, values in (
        ("sources_in_log", sources),
        ("action_get_list", actions),
        ("object_get_list", objects),
    ):
        body = _ok(api.act(action, sid=sid))
        assert body["rows"] == [{"id": v, "name": v} for v in values], action

    # a tenant administrator sees its tenant's sources only
    body = _ok(api.act("sources_in_log", sid=api.login("adminA", "tenantA")))
    with api_engine.connect() as c:
        mine = sorted(c.scalars(text(
            "SELECT DISTINCT source FROM audit_log WHERE source IS NOT NULL "
            "AND tenant_id = :t AND NOT superadmin"), {"t": world.tenants["A"]}))  # fmt: skip
    assert [r["name"] for r in body["rows"]] == mine


# ---- details, tiny lists, all ids -----------------------------------------------------------
@pytest.mark.parametrize(
    ("obj", "label", "name"),
    [
        ("user", "users", "usera"),
        ("vm", "vms", "vmA"),
        ("osf", "osfs", "osfA"),
        ("di", "dis", "imageA.tar"),
        ("administrator", "admins", "adminA"),
        ("tenant", "tenants", "tenantA"),
        ("role", "roles", "roleA"),
    ],
)
def test_details_tiny_list_and_all_ids(
    obj: str, label: str, name: str, api: Api, world: World
) -> None:
    sid = api.login("root")
    ids: dict[str, int] = getattr(world, label)
    [row] = _ok(api.act(f"{obj}_get_details", sid=sid, filters={"id": ids["A"]}))["rows"]
    assert row["id"] == ids["A"]
    rows = _ok(api.act(f"{obj}_tiny_list", sid=sid, filters={"id": [ids["A"], ids["B"]]}))["rows"]
    assert {r["id"]: r["name"] for r in rows}[ids["A"]] == name
    assert all(set(r) == {"id", "name"} for r in rows)
    body = _ok(api.act(f"{obj}_all_ids", sid=sid, filters={"id": [ids["B"], ids["A"]]}))
    assert body["rows"] == sorted([ids["A"], ids["B"]])


def test_host_details_tiny_list_and_all_ids(api: Api, world: World) -> None:
    sid = api.login("root")
    [row] = _ok(api.act("host_get_details", sid=sid, filters={"id": world.host}))["rows"]
    assert (row["id"], row["name"]) == (world.host, "node1")
    assert _ok(api.act("host_tiny_list", sid=sid))["rows"] == [{"id": world.host, "name": "node1"}]
    assert _ok(api.act("host_all_ids", sid=sid, filters={"name": "node1"}))["rows"] == [world.host]


# ---- VMs: addresses -------------------------------------------------------------------------
def test_vm_mac_and_next_boot_ip(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("root")
    fields = ["ip", "next_boot_ip", "mac"]
    [row] = _ok(api.act("vm_get_list", sid=sid, filters={"id": world.vms["A"]}, fields=fields))[
        "rows"
    ]
    octets = [int(o) for o in row["ip"].split(".")]
    assert row["next_boot_ip"] == row["ip"]
    assert row["mac"] == "54:52:00:" + ":".join(f"{o:02x}" for o in octets[1:])
    with Session(api_engine) as s, s.begin():
        s.add(Config(tenant_id=-1, key="vm.network.mac.prefix", value="AA:BB:CC"))
    [row] = _ok(api.act("vm_get_details", sid=sid, filters={"id": world.vms["A"]},
                        fields=["mac"]))["rows"]  # fmt: skip
    assert row["mac"] == "aa:bb:cc:" + ":".join(f"{o:02x}" for o in octets[1:])


# ---- configuration screens --------------------------------------------------------------------
def test_config_prefixes_and_key_re(api: Api, world: World) -> None:
    sid = api.login("root")
    body = _ok(api.act("config_preffix_get", sid=sid))
    assert all(isinstance(p, str) and "." not in p for p in body["rows"])
    assert body["rows"] == sorted(body["rows"])
    assert {"l7r", "vm", "wat"} <= set(body["rows"])
    assert "database" not in body["rows"]  # node-local tokens are not the API's

    # node-local tokens (the egress switches) are the node's, never the API's
    wanted = sorted(
        t.name for t in TOKENS if t.name.startswith("vm.network.") and not is_node_local(t.name)
    )
    rows = _ok(api.act("config_get", sid=sid, filters={"key_re": r"^vm\.network\."},
                       fields=["key"]))["rows"]  # fmt: skip
    assert [r["key"] for r in rows] == wanted
    # the WAT's search box: a bare key is a part of the names
    found = _ok(api.act("config_get", sid=sid, filters={"key": "network."}, fields=["key"]))
    assert [r["key"] for r in found["rows"]] == sorted(
        t.name for t in TOKENS if "network." in t.name and not is_node_local(t.name)
    )
    bad = api.act("config_get", sid=sid, filters={"key_re": "(unclosed"})
    assert bad["status"] == 6310

    mine = _ok(api.act("config_wat_get_details", sid=api.login("adminA", "tenantA")))["rows"]
    assert [r.get("block") for r in mine] == [10]


# ---- properties screen ----------------------------------------------------------------------
def test_property_rows_say_where_a_key_is_assigned(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    prop = world.props["A"]
    created = _ok(api.act("vm_create_property_list", sid=sid, arguments={"property_id": prop}))
    assert created["rows"] == [{"id": prop}]  # QVD's face: a key's assignment is the key
    _ok(api.act("di_create_property_list", sid=sid, arguments={"property_id": prop}))
    listed = _ok(api.act("vm_get_property_list", sid=sid))["rows"]
    assert [(r["id"], r["property_id"], r["key"]) for r in listed] == [(prop, prop, "propA")]
    [row] = _ok(api.act("property_get_list", sid=sid, filters={"id": prop}))["rows"]
    assert row["property_id"] == prop
    assigned = {o: row[f"in_{o}"] for o in ("user", "vm", "host", "osf", "di")}
    assert assigned == {"user": 0, "vm": 1, "host": 0, "osf": 0, "di": 1}

    # unticking a box: the WAT names the property by the property_id it was given
    _ok(api.act("vm_delete_property_list", sid=sid, filters={"id": row["property_id"]}))
    [row] = _ok(api.act("property_get_list", sid=sid, filters={"id": prop}))["rows"]
    assert (row["in_vm"], row["in_di"]) == (0, 1)


# ---- ACL lists of a role / an administrator --------------------------------------------------
def test_acls_in_roles_one_row_per_acl_with_its_origin(
    api: Api, world: World, api_engine: Engine
) -> None:
    reader = _role_id(api_engine, "VMs Reader")
    reader_vm = sorted(a for a in _inherited_acls(api_engine, reader) if a.startswith("vm."))
    shared, denied = reader_vm[0], reader_vm[1]
    own = "vm.update.state" if "vm.update.state" not in reader_vm else "vm.delete."
    role = world.roles["A"]
    with Session(api_engine) as s, s.begin():
        s.add(RoleRoleRelation(inheritor_id=role, inherited_id=reader))
        for name, positive in ((shared, True), (own, True), (denied, False)):
            acl_id = s.scalar(select(Acl.id).where(Acl.name == name))
            s.add(AclRoleRelation(role_id=role, acl_id=acl_id, positive=positive))
    sid = api.login("root")
    # the WAT's ACL tree: a bare LIKE pattern and the role id as text
    body = _ok(api.act("get_acls_in_roles", sid=sid,
                       filters={"acl_name": "vm.%", "role_id": str(role)}))  # fmt: skip
    by_name = {r["name"]: r for r in body["rows"]}
    assert sorted(by_name) == sorted((set(reader_vm) | {own}) - {denied})
    assert body["total"] == len(by_name)
    assert by_name[shared]["roles"] == {str(role): "roleA", str(reader): "VMs Reader"}
    assert by_name[own]["roles"] == {str(role): "roleA"}
    assert "role_id" not in by_name[own]

    # qa4's "admin … can": ids, operative and a LIKE operator
    root_role = _role_id(api_engine, "Root")
    body = _ok(api.act("get_acls_in_admins", sid=sid, filters={
        "admin_id": [world.admins["A"]], "operative": 1, "acl_name": {"LIKE": "vm.see.ip"},
    }))  # fmt: skip
    [row] = body["rows"]
    assert row["name"] == "vm.see.ip"
    assert row["roles"] == {str(root_role): "Root"}


# ---- live updates (/api/ws) ---------------------------------------------------------------
def test_ws_pushes_the_dashboard_and_details_in_qvds_shape(server: Server) -> None:  # noqa: F811
    w = server.world
    sock = server.connect(server.admin("A"), query={"action": "qvd_objects_statistics"})
    first = sock.recv_json()
    assert (first["status"], first["users_count"], first["blocked_users_count"]) == (0, 1, 0)
    r = server.api.act("user_update", sid=server.api.login("root"),
                       filters={"id": w.users["A"]}, arguments={"blocked": True})  # fmt: skip
    assert r["status"] == 0, r
    assert sock.recv_json(timeout=5)["blocked_users_count"] == 1

    query = {"action": "di_get_details", "filters": {"id": w.dis["A"]}, "fields": ["id", "tags"]}
    details = server.connect(server.admin("A"), query=query).recv_json()
    [row] = details["rows"]
    assert sorted(t["tag"] for t in row["tags"]) == ["default", "head", "v1"]
    assert {t["tag"]: t["fixed"] for t in row["tags"]}["v1"] == 1
