"""Seed data: tenants, ACLs, built-in roles, effective ACLs with inheritance and deny."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qvd.db import administrator_acls, role_acls
from qvd.db.models import (
    Acl,
    AclRoleRelation,
    Administrator,
    Host,
    Osf,
    Role,
    RoleAdministratorRelation,
    RoleRoleRelation,
    Tenant,
    User,
)
from qvd.db.seed_acls import ACLS, ALL_ACLS, ALL_BUILTIN_ROLES


def _role(session: Session, name: str) -> int:
    role_id = session.scalar(select(Role.id).where(Role.name == name, Role.tenant_id == -1))
    assert role_id is not None, name
    return role_id


def _acl(session: Session, name: str) -> int:
    acl_id = session.scalar(select(Acl.id).where(Acl.name == name))
    assert acl_id is not None, name
    return acl_id


def test_tenants(session: Session) -> None:
    rows = session.execute(select(Tenant.id, Tenant.name).order_by(Tenant.id)).all()
    assert [tuple(r) for r in rows] == [(-1, "-"), (0, "*"), (1, "default")]


def test_full_acl_list(session: Session) -> None:
    names = set(session.scalars(select(Acl.name)))
    assert len(ACLS) == 244  # revision 0003's seed
    assert names == set(ALL_ACLS)  # with the later revisions' own
    assert {"vm.update.state", "di.create.default", "config.qvd.", "tenant.purge."} <= names
    by_object = {a.split(".")[0] for a in names}
    assert by_object == {
        "administrator", "config", "di", "host", "log", "osf", "policy", "property", "role",
        "session", "tenant", "user", "views", "vm",
    }  # fmt: skip


def test_builtin_roles(session: Session) -> None:
    roles = {r.name: r for r in session.scalars(select(Role).where(Role.tenant_id == -1))}
    assert set(roles) == {spec.name for spec in ALL_BUILTIN_ROLES}
    assert all(r.fixed for r in roles.values())
    public = {n for n, r in roles.items() if not r.internal}
    assert public == {"Root", "Operator L1", "Operator L2", "Operator L3"}
    for obj in ("Administrators", "Images", "Nodes", "OSFs", "Roles", "Tenants", "Users", "VMs"):
        for kind in ("Creator", "Eraser", "Operator", "Reader", "Updater", "Manager"):
            assert f"{obj} {kind}" in roles


def test_root_has_every_acl_and_operators_nest(session: Session) -> None:
    assert role_acls(session, _role(session, "Root")) == frozenset(ALL_ACLS)
    l1 = role_acls(session, _role(session, "Operator L1"))
    l2 = role_acls(session, _role(session, "Operator L2"))
    l3 = role_acls(session, _role(session, "Operator L3"))
    assert l1 == role_acls(session, _role(session, "QVD Reader"))
    assert l1 < l2 < l3
    assert "vm.update.state" in l2 - l1
    assert "host.create." in l3 - l2
    reader = role_acls(session, _role(session, "VMs Reader"))
    assert reader
    assert all(a.startswith(("vm.see", "vm.stats.")) for a in reader)


def test_inheritance_with_deny(session: Session) -> None:
    """A role's own deny beats what it inherits; a role above may grant it again."""
    child = Role(tenant_id=1, name="Helpdesk")
    top = Role(tenant_id=1, name="Helpdesk lead")
    extra = Role(tenant_id=1, name="Blocker")
    session.add_all([child, top, extra])
    session.flush()
    session.add_all([
        RoleRoleRelation(inheritor_id=child.id, inherited_id=_role(session, "VMs Manager")),
        AclRoleRelation(role_id=child.id, acl_id=_acl(session, "vm.delete."), positive=False),
        AclRoleRelation(role_id=child.id, acl_id=_acl(session, "user.see-main."), positive=True),
        RoleRoleRelation(inheritor_id=top.id, inherited_id=child.id),
        AclRoleRelation(role_id=extra.id, acl_id=_acl(session, "vm.delete."), positive=True),
    ])  # fmt: skip
    session.flush()

    vms_manager = role_acls(session, _role(session, "VMs Manager"))
    helpdesk = role_acls(session, child.id)
    assert "vm.delete." in vms_manager
    assert helpdesk == (vms_manager - {"vm.delete."}) | {"user.see-main."}
    assert role_acls(session, top.id) == helpdesk  # the deny is inherited with the role

    session.add(RoleRoleRelation(inheritor_id=top.id, inherited_id=extra.id))
    session.flush()
    assert "vm.delete." in role_acls(session, top.id)  # granted again by another path

    admin = Administrator(tenant_id=1, name="ops")
    session.add(admin)
    session.flush()
    views_reader = _role(session, "Views Reader")
    session.add_all([
        RoleAdministratorRelation(role_id=child.id, administrator_id=admin.id),
        RoleAdministratorRelation(role_id=views_reader, administrator_id=admin.id),
    ])  # fmt: skip
    session.flush()
    assert administrator_acls(session, admin.id) == helpdesk | {"views.see-main."}


def test_inheritance_cycles_are_refused(session: Session) -> None:
    a, b, c = (Role(tenant_id=1, name=n) for n in ("A", "B", "C"))
    session.add_all([a, b, c])
    session.flush()
    session.add_all([
        RoleRoleRelation(inheritor_id=a.id, inherited_id=b.id),
        RoleRoleRelation(inheritor_id=b.id, inherited_id=c.id),
    ])  # fmt: skip
    session.flush()
    session.add(RoleRoleRelation(inheritor_id=c.id, inherited_id=a.id))
    with pytest.raises(IntegrityError, match="inheritance cycle"):
        session.flush()


def test_recovery_admin_has_no_password(session: Session) -> None:
    batman = session.get(Administrator, 0)
    assert batman is not None
    assert (batman.name, batman.tenant_id, batman.password) == ("batman", 0, None)


def test_ids_start_at_10000(session: Session) -> None:
    user = User(tenant_id=1, login="ana")
    osf = Osf(tenant_id=1, name="desk")
    host = Host(name="node1", address="10.0.0.2")
    tenant = Tenant(name="acme")
    session.add_all([user, osf, host, tenant])
    session.flush()
    assert user.id == osf.id == host.id == tenant.id == 10000


def test_runtime_rows_come_with_their_parents(session: Session) -> None:
    session.execute(text("INSERT INTO hosts (name, address) VALUES ('n1', '10.0.0.3')"))
    counts = session.execute(
        text("SELECT (SELECT count(*) FROM host_runtimes), (SELECT count(*) FROM host_counters)")
    ).one()
    assert tuple(counts) == (1, 1)
    state = session.scalar(text("SELECT state FROM host_runtimes"))
    assert state == "stopped"
