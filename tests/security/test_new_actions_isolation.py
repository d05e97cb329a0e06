"""Attack test: the read actions added for the WAT (``<obj>_get_details``,
``<obj>_tiny_list``, ``<obj>_all_ids``, ``tag_tiny_list``, ``acl_tiny_list``,
``host_tiny_list``, ``log_get_details``, ``sources_in_log``, ``get_acls_in_*``,
``number_of_acls_in_*`` with ids as text, ``config_preffix_get``,
``config_wat_get_details``) and the new dashboard statistics never show a tenant
administrator anything of another tenant.

Against the real API and PostgreSQL: the administrator of tenant A (Root role) aims
each action at tenant B's objects — ids as numbers and as text, ``-or`` lists mixing
A's and B's ids, no filter at all — and no id, name, log row or host of B comes back.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from qvd.api.actions.listing import select_ids
from qvd.api.actions.principal import Principal
from qvd.api.services import hosts
from qvd.db.models import AuditLog, DiTag, Host, VmRuntime
from tests.api.conftest import Api, World
from tests.api.conftest import shared as shared

_SECRET_SOURCE = "b-only-source"
_B_HOST = "b-only-host"

# object -> the World attribute holding its ids, and B's name as the world makes it
_OBJECTS = {
    "user": ("users", "userb"),
    "vm": ("vms", "vmB"),
    "osf": ("osfs", "osfB"),
    "di": ("dis", "imageB.tar"),
    "role": ("roles", "roleB"),
    "administrator": ("admins", "adminB"),
    "tenant": ("tenants", "tenantB"),
}


@pytest.fixture(scope="module")
def attack(shared: tuple[Api, World, Engine]) -> tuple[Api, World, str, dict[str, Any]]:
    """adminA's session, after B got a log row, a connected VM with an expiration
    and a host of its own."""
    api, world, engine = shared
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with Session(engine) as s, s.begin():
        host_b = Host(name=_B_HOST, address="b-only.nodes.test")
        s.add(host_b)
        s.flush()
        host_b_id = host_b.id
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == world.vms["B"])
            .values(host_id=host_b_id, vm_state="running", user_state="connected",
                    vm_expiration_hard=soon)
        )  # fmt: skip
        s.execute(
            update(VmRuntime).where(VmRuntime.vm_id == world.vms["A"]).values(host_id=world.host)
        )
        log_b = s.execute(
            insert(AuditLog)
            .values(administrator_id=world.admins["B"], administrator_name="adminB",
                    tenant_id=world.tenants["B"], tenant_name="tenantB", action="user_update",
                    type_of_action="update", qvd_object="user", object_id=world.users["B"],
                    object_name="userb", status=0, source=_SECRET_SOURCE)
            .returning(AuditLog.id)
        ).scalar_one()  # fmt: skip
        tags_b = list(s.scalars(select(DiTag.id).where(DiTag.di_id == world.dis["B"])))
    b = {"host": host_b_id, "log": log_b, "tags": tags_b}
    return api, world, api.login("adminA", "tenantA"), b


def _leaks(answer: dict[str, Any], ids: list[int], names: list[str]) -> list[str]:
    """What of B an answer shows: its ids in an ``id``-like field, its names anywhere."""
    found = []
    for row in answer.get("rows") or []:
        if not isinstance(row, dict):  # ``<obj>_all_ids``: a flat list of ids
            row = {"id": row}
        for key in ("id", "role_id", "admin_id", "acl_id"):
            if key in row and row[key] in ids:
                found.append(f"{key}={row[key]}")
    text = json.dumps(answer)
    found += [n for n in names if n in text]
    return found


def _filters(a: int, b: int) -> list[Any]:
    return [
        None,
        {"id": b},
        {"id": str(b)},
        {"id": [a, b]},
        {"id": {"=": str(b)}},
        {"-or": [{"id": a}, {"id": b}]},
        {"-or": [{"id": str(b)}, {"id": {"=": b}}]},
    ]


@pytest.mark.parametrize("obj", sorted(_OBJECTS))
@pytest.mark.parametrize("verb", ["get_details", "tiny_list", "all_ids"])
def test_object_reads_stay_in_the_tenant(
    attack: tuple[Api, World, str, dict[str, Any]], obj: str, verb: str
) -> None:
    api, world, sid, _b = attack
    attr, name_b = _OBJECTS[obj]
    a, b = getattr(world, attr)["A"], getattr(world, attr)["B"]
    for filters in _filters(a, b):
        body = {} if filters is None else {"filters": filters}
        answer = api.act(f"{obj}_{verb}", sid=sid, **body)
        assert not _leaks(answer, [b], [name_b]), (obj, verb, filters, answer)


def test_host_reads_name_no_host_of_another_tenant(
    attack: tuple[Api, World, str, dict[str, Any]],
) -> None:
    api, _world, sid, b = attack
    for filters in (None, {"id": b["host"]}, {"id": str(b["host"])}, {"name": _B_HOST}):
        body = {} if filters is None else {"filters": filters}
        answer = api.act("host_tiny_list", sid=sid, **body)
        assert not _leaks(answer, [b["host"]], [_B_HOST, "node1"]), (filters, answer)
    for action in ("host_get_details", "host_all_ids", "host_get_list"):
        answer = api.act(action, sid=sid)
        assert not _leaks(answer, [b["host"]], [_B_HOST, "node1"]), (action, answer)


def test_host_scope_of_a_tenant_admin_is_the_hosts_running_its_vms(
    shared: tuple[Api, World, Engine],
    attack: tuple[Api, World, str, dict[str, Any]],
) -> None:
    """Should a tenant administrator reach a host list (``host_tiny_list`` also takes a
    ``vm.filter.host`` ACL), it names only the hosts its own VMs run on."""
    _api, world, engine = shared
    b = attack[3]
    tenant_a = Principal(admin_id=world.admins["A"], admin_name="adminA",
                         tenant_id=world.tenants["A"], tenant_name="tenantA",
                         acls=frozenset({"vm.filter.host"}))  # fmt: skip
    root = Principal(admin_id=0, admin_name="root", tenant_id=0, tenant_name="*",
                     acls=frozenset())  # fmt: skip
    with Session(engine) as s:
        assert select_ids(s, hosts.SPEC, tenant_a, None) == [world.host]
        assert select_ids(s, hosts.SPEC, tenant_a, {"name": _B_HOST}) == []
        assert b["host"] in select_ids(s, hosts.SPEC, root, None)


def test_tag_and_acl_tiny_lists(attack: tuple[Api, World, str, dict[str, Any]]) -> None:
    api, world, sid, b = attack
    di_b = world.dis["B"]
    for filters in (None, {"di_id": di_b}, {"di_id": str(di_b)}, {"id": b["tags"]},
                    {"-or": [{"di_id": world.dis["A"]}, {"di_id": di_b}]}):  # fmt: skip
        body = {} if filters is None else {"filters": filters}
        answer = api.act("tag_tiny_list", sid=sid, **body)
        assert not _leaks(answer, b["tags"], []), (filters, answer)
    answer = api.act("acl_tiny_list", sid=sid)
    assert answer["status"] == 0
    assert answer["rows"]
    assert not [r for r in answer["rows"] if r["name"].startswith(("tenant.", "host."))]


def test_log_reads_stay_in_the_tenant(attack: tuple[Api, World, str, dict[str, Any]]) -> None:
    api, world, sid, b = attack
    for action in ("log_get_details", "log_get_list"):
        for filters in (None, {"id": b["log"]}, {"id": str(b["log"])},
                        {"object_id": world.users["B"]},
                        {"-or": [{"id": b["log"]}, {"source": _SECRET_SOURCE}]}):  # fmt: skip
            body = {} if filters is None else {"filters": filters}
            answer = api.act(action, sid=sid, **body)
            assert not _leaks(answer, [b["log"]], [_SECRET_SOURCE, "adminB"]), (filters, answer)
    for action in ("sources_in_log", "action_get_list", "object_get_list"):
        answer = api.act(action, sid=sid)
        assert answer["status"] == 0, answer
        assert not _leaks(answer, [], [_SECRET_SOURCE]), (action, answer)


@pytest.mark.parametrize(
    ("action", "key", "attr"),
    [
        ("get_acls_in_roles", "role_id", "roles"),
        ("get_acls_in_admins", "admin_id", "admins"),
        ("number_of_acls_in_role", "role_id", "roles"),
        ("number_of_acls_in_admin", "admin_id", "admins"),
    ],
)
def test_acl_reads_of_b_roles_and_admins(
    attack: tuple[Api, World, str, dict[str, Any]], action: str, key: str, attr: str
) -> None:
    api, world, sid, _b = attack
    a, b = getattr(world, attr)["A"], getattr(world, attr)["B"]
    for ids in (b, str(b), [str(a), str(b)], {"=": str(b)}, [a, b]):
        answer = api.act(action, sid=sid, filters={key: ids})
        assert not [r for r in answer.get("rows") or [] if r.get(key) == b], (ids, answer)
        assert "roleB" not in json.dumps(answer)
        assert "adminB" not in json.dumps(answer)


def test_config_reads_stay_in_the_tenant(attack: tuple[Api, World, str, dict[str, Any]]) -> None:
    api, world, sid, _b = attack
    b = world.tenants["B"]
    own = api.act("config_get", sid=sid)
    assert own["status"] == 0, own
    prefixes = api.act("config_preffix_get", sid=sid)
    assert prefixes["status"] == 0, prefixes
    allowed = {str(r["key"]).split(".", 1)[0] for r in own["rows"]}
    assert set(prefixes["rows"]) <= allowed  # a flat list of prefixes
    for filters in ({"tenant_id": b}, {"tenant_id": str(b)}, {"id": b}, {"id": str(b)},
                    {"-or": [{"tenant_id": b}, {"id": b}]}):  # fmt: skip
        answer = api.act("config_wat_get_details", sid=sid, filters=filters)
        assert not _leaks(answer, [b], ["tenantB"]), (filters, answer)
        for row in answer.get("rows") or []:
            assert row.get("tenant_id", world.tenants["A"]) == world.tenants["A"], answer


def test_statistics_count_only_the_tenant(attack: tuple[Api, World, str, dict[str, Any]]) -> None:
    api, world, sid, _b = attack
    stats = api.act("qvd_objects_statistics", sid=sid)["rows"][0]
    assert "top_populated_hosts" not in stats  # host.* ACLs are the supertenant's
    assert stats["connected_users_count"] == 0  # only B's user is connected
    assert not [v for v in stats["vms_with_expiration_date"] if v["id"] == world.vms["B"]]
    assert "vmB" not in json.dumps(stats)
    root = api.act("qvd_objects_statistics", sid=api.login("root"))["rows"][0]
    assert root["connected_users_count"] >= 1  # the attack setup is live
    assert [v for v in root["vms_with_expiration_date"] if v["id"] == world.vms["B"]]
    assert [h for h in root["top_populated_hosts"] if h["name"] == _B_HOST]
