"""``vm_spy``: who may ask for a spy ticket, of which VM, and what is stored and logged.

Against the real API app and a throwaway database: ACLs (``vm.spy.``, and
``vm.spy.interactive`` for input), tenant scope, the VM's state, the ticket stored as
its SHA-256 only, valid 60 seconds, and the audit row without the ticket."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from qvd.db.models import (
    Acl,
    AclRoleRelation,
    AuditLog,
    Role,
    RoleAdministratorRelation,
    VmRuntime,
    VmSpyTicket,
)
from qvd.db.spytickets import TICKET_SECONDS, TicketState, inspect
from tests.api.conftest import Api, World, add_admin


def admin_with(engine: Engine, world: World, name: str, acls: Iterable[str]) -> None:
    """An administrator of tenant A holding exactly ``acls`` (through a role of its own)."""
    with Session(engine) as s, s.begin():
        role = Role(tenant_id=world.tenants["A"], name=f"role-{name}")
        s.add(role)
        s.flush()
        for acl in acls:
            acl_id = s.scalar(select(Acl.id).where(Acl.name == acl))
            assert acl_id is not None, acl
            s.add(AclRoleRelation(acl_id=acl_id, role_id=role.id))
        admin_id = add_admin(s, name, world.tenants["A"], role=None)
        s.add(RoleAdministratorRelation(role_id=role.id, administrator_id=admin_id))


def run_vm(engine: Engine, world: World, label: str, state: str = "running") -> int:
    vm_id = world.vms[label]
    with Session(engine) as s, s.begin():
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == vm_id)
            .values(vm_state=state, host_id=world.host, user_state="connected")
        )
    return vm_id


def spy(api: Api, sid: str, vm_id: int, **arguments: object) -> dict[str, object]:
    return api.act("vm_spy", sid=sid, filters={"id": vm_id}, arguments=arguments)


def test_a_ticket_for_a_running_vm_is_stored_hashed_and_valid_a_minute(
    api: Api, world: World, api_engine: Engine
) -> None:
    vm_id = run_vm(api_engine, world, "A")
    sid = api.login("adminA", "tenantA")
    r = spy(api, sid, vm_id)
    assert r["status"] == 0, r
    [row] = r["rows"]  # type: ignore[misc]
    ticket = row["ticket"]
    assert len(ticket) == 43
    assert ticket.isascii()
    assert row["url"] == "https://node1.nodes.test:4433/spy"
    with Session(api_engine) as s:
        stored = s.scalars(select(VmSpyTicket)).all()
    assert len(stored) == 1
    assert stored[0].token_sha256 == hashlib.sha256(ticket.encode()).hexdigest()
    with api_engine.connect() as conn:
        dumped = conn.execute(text("SELECT t::text FROM vm_spy_tickets t")).scalar_one()
    assert ticket not in dumped
    assert stored[0].vm_id == vm_id
    assert stored[0].administrator_id == world.admins["A"]
    assert stored[0].administrator_name == "adminA"
    assert stored[0].tenant_id == world.tenants["A"]
    assert stored[0].interactive is False
    assert stored[0].used_at is None
    expires = dt.datetime.fromisoformat(str(row["expires"]))
    assert expires == stored[0].expiration
    with api_engine.connect() as conn:
        now = conn.scalar(text("SELECT now()"))
        assert inspect(conn, ticket)[0] is TicketState.VALID
    assert dt.timedelta(seconds=0) < expires - now <= dt.timedelta(seconds=TICKET_SECONDS)


def test_the_audit_log_records_the_spy_without_the_ticket(
    api: Api, world: World, api_engine: Engine
) -> None:
    vm_id = run_vm(api_engine, world, "A")
    sid = api.login("adminA", "tenantA")
    r = spy(api, sid, vm_id, interactive=True)
    assert r["status"] == 0, r
    ticket = r["rows"][0]["ticket"]  # type: ignore[index]
    with Session(api_engine) as s:
        entries = s.scalars(select(AuditLog).where(AuditLog.action == "vm_spy")).all()
        everything = json.dumps(
            [[e.arguments, e.object_name] for e in s.scalars(select(AuditLog)).all()]
        )
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.object_id, entry.object_name, entry.status) == (vm_id, "vmA", 0)
    assert entry.administrator_name == "adminA"
    assert entry.tenant_id == world.tenants["A"]
    assert entry.arguments == {"arguments": {"interactive": True}, "filters": {"id": vm_id}}
    assert ticket not in everything


def test_without_the_spy_acl_it_is_refused(api: Api, world: World, api_engine: Engine) -> None:
    vm_id = run_vm(api_engine, world, "A")
    admin_with(api_engine, world, "viewer", ["vm.see-main.", "vm.see.id", "vm.see.state"])
    sid = api.login("viewer", "tenantA")
    r = spy(api, sid, vm_id)
    assert r["status"] == 4210, r
    assert "vm.spy." in str(r["message"])
    with Session(api_engine) as s:
        assert s.scalars(select(VmSpyTicket)).all() == []


def test_interactive_needs_its_own_acl(api: Api, world: World, api_engine: Engine) -> None:
    vm_id = run_vm(api_engine, world, "A")
    admin_with(api_engine, world, "watcher", ["vm.see-main.", "vm.see.id", "vm.spy."])
    sid = api.login("watcher", "tenantA")
    r = spy(api, sid, vm_id, interactive=True)
    assert r["status"] == 4230, r
    assert "vm.spy.interactive" in str(r["message"])
    with Session(api_engine) as s:
        assert s.scalars(select(VmSpyTicket)).all() == []
    # view-only is what this administrator may do
    r = spy(api, sid, vm_id)
    assert r["status"] == 0, r
    r = spy(api, sid, vm_id, interactive=False)
    assert r["status"] == 0, r
    with Session(api_engine) as s:
        assert [t.interactive for t in s.scalars(select(VmSpyTicket))] == [False, False]


def test_another_tenants_vm_is_not_found(api: Api, world: World, api_engine: Engine) -> None:
    vm_b = run_vm(api_engine, world, "B")
    sid = api.login("adminA", "tenantA")
    r = spy(api, sid, vm_b)
    assert r["status"] == 1300, r
    assert "vmB" not in json.dumps(r)
    with Session(api_engine) as s:
        assert s.scalars(select(VmSpyTicket)).all() == []
    # the superadmin may: the ticket names the administrator's tenant (0), not the VM's
    root = api.login("root")
    r = spy(api, root, vm_b)
    assert r["status"] == 0, r
    with Session(api_engine) as s:
        [stored] = s.scalars(select(VmSpyTicket)).all()
    assert (stored.vm_id, stored.tenant_id, stored.administrator_name) == (vm_b, 0, "root")


@pytest.mark.parametrize("state", ["stopped", "starting", "stopping", "zombie"])
def test_a_vm_that_is_not_running_is_refused(
    api: Api, world: World, api_engine: Engine, state: str
) -> None:
    vm_id = run_vm(api_engine, world, "A", state)
    sid = api.login("adminA", "tenantA")
    r = spy(api, sid, vm_id)
    assert r["status"] == 5150, r
    assert f"is {state}" in str(r["message"])
    assert "running" in str(r["message"])
    with Session(api_engine) as s:
        assert s.scalars(select(VmSpyTicket)).all() == []


def test_a_running_vm_being_stopped_is_refused(api: Api, world: World, api_engine: Engine) -> None:
    vm_id = run_vm(api_engine, world, "A")
    with Session(api_engine) as s, s.begin():
        s.execute(update(VmRuntime).where(VmRuntime.vm_id == vm_id).values(vm_cmd="stop"))
    r = spy(api, api.login("adminA", "tenantA"), vm_id)
    assert r["status"] == 5150, r
    assert "'stop' pending" in str(r["message"])


def test_one_vm_exactly_and_no_unknown_arguments(
    api: Api, world: World, api_engine: Engine
) -> None:
    run_vm(api_engine, world, "A")
    run_vm(api_engine, world, "B")
    root = api.login("root")
    r = api.act("vm_spy", sid=root, filters={"id": [world.vms["A"], world.vms["B"]]})
    assert r["status"] == 6210, r
    assert "exactly one" in str(r["message"])
    r = api.act("vm_spy", sid=root)
    assert r["status"] == 6220, r
    r = spy(api, root, world.vms["A"], view_only=True)
    assert r["status"] == 6230, r
    r = spy(api, root, world.vms["A"], interactive="maybe")
    assert r["status"] == 6320, r
    with Session(api_engine) as s:
        assert s.scalars(select(VmSpyTicket)).all() == []


def test_the_url_is_the_portal_on_the_vms_node(api: Api, world: World, api_engine: Engine) -> None:
    vm_id = run_vm(api_engine, world, "A")
    with Session(api_engine) as s, s.begin():
        s.execute(text("UPDATE hosts SET address = 'fd00::7' WHERE id = :h"), {"h": world.host})
    r = spy(api, api.login("adminA", "tenantA"), vm_id)
    assert r["rows"][0]["url"] == "https://[fd00::7]:4433/spy"  # type: ignore[index]


def test_the_url_follows_the_portal_port(api: Api, world: World, api_engine: Engine) -> None:
    vm_id = run_vm(api_engine, world, "A")
    with Session(api_engine) as s, s.begin():
        s.execute(
            text(
                "INSERT INTO configs (tenant_id, key, value) VALUES (-1, 'l7r.portal.port', '8443')"
            )
        )
    r = spy(api, api.login("adminA", "tenantA"), vm_id)
    assert r["rows"][0]["url"] == "https://node1.nodes.test:8443/spy"  # type: ignore[index]
