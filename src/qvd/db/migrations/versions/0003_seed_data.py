"""Seed data: state and command names, the three fixed tenants, the ACLs, the
built-in roles (reference §5.5-5.6) and the recovery administrator.

The superadmin is not seeded here: ``qvd db init`` creates it with a generated
password, shown once (there is no well-known default password).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 21:12:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qvd.db.seed_acls import ACLS, BUILTIN_ROLES

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_LOOKUPS = {
    "vm_states": ("stopped", "starting", "running", "stopping", "zombie", "debugging"),
    "vm_cmds": ("start", "stop", "busy"),
    "user_states": ("disconnected", "connecting", "connected"),
    "user_cmds": ("abort",),
    "host_states": ("stopped", "starting", "running", "stopping", "lost"),
    "host_cmds": ("stop",),
}
_TENANTS = (
    (-1, "-", "Common to all tenants: global configuration and built-in roles"),
    (0, "*", "Supertenant: its administrators manage every tenant"),
    (1, "default", "The first tenant"),
)
GLOBAL_TENANT = -1
SUPERTENANT = 0
RECOVERY_ADMIN_ID = 0


def upgrade() -> None:
    conn = op.get_bind()
    for table, names in _LOOKUPS.items():
        lookup = sa.table(table, sa.column("name", sa.String))
        op.bulk_insert(lookup, [{"name": n} for n in names])

    tenants = sa.table(
        "tenants", sa.column("id", sa.Integer), sa.column("name", sa.String),
        sa.column("description", sa.Text),
    )  # fmt: skip
    op.bulk_insert(tenants, [{"id": i, "name": n, "description": d} for i, n, d in _TENANTS])

    acls = sa.table("acls", sa.column("id", sa.Integer), sa.column("name", sa.String))
    acl_ids: dict[str, int] = {}
    for name in ACLS:
        acl_ids[name] = conn.execute(
            sa.insert(acls).values(name=name).returning(acls.c.id)
        ).scalar_one()

    roles = sa.table(
        "roles", sa.column("id", sa.Integer), sa.column("tenant_id", sa.Integer),
        sa.column("name", sa.String), sa.column("internal", sa.Boolean),
        sa.column("fixed", sa.Boolean), sa.column("description", sa.Text),
    )  # fmt: skip
    role_ids: dict[str, int] = {}
    for spec in BUILTIN_ROLES:
        role_ids[spec.name] = conn.execute(
            sa.insert(roles)
            .values(tenant_id=GLOBAL_TENANT, name=spec.name, internal=spec.internal, fixed=True,
                    description="Built-in role")
            .returning(roles.c.id)
        ).scalar_one()  # fmt: skip

    grants = sa.table(
        "acl_role_relations", sa.column("acl_id", sa.Integer), sa.column("role_id", sa.Integer),
        sa.column("positive", sa.Boolean),
    )  # fmt: skip
    inherits = sa.table(
        "role_role_relations", sa.column("inheritor_id", sa.Integer),
        sa.column("inherited_id", sa.Integer),
    )  # fmt: skip
    grant_rows = [
        {"acl_id": acl_ids[a], "role_id": role_ids[s.name], "positive": True}
        for s in BUILTIN_ROLES
        for a in s.acls
    ]
    inherit_rows = [
        {"inheritor_id": role_ids[s.name], "inherited_id": role_ids[parent]}
        for s in BUILTIN_ROLES
        for parent in s.inherits
    ]
    if grant_rows:
        op.bulk_insert(grants, grant_rows)
    if inherit_rows:
        op.bulk_insert(inherits, inherit_rows)

    admins = sa.table(
        "administrators", sa.column("id", sa.Integer), sa.column("tenant_id", sa.Integer),
        sa.column("name", sa.String), sa.column("description", sa.Text),
    )  # fmt: skip
    op.bulk_insert(
        admins,
        [{
            "id": RECOVERY_ADMIN_ID, "tenant_id": SUPERTENANT, "name": "batman",
            "description": "Recovery administrator: no password until `qvd db admin-password "
                           "batman` gives it one on the node",
        }],
    )  # fmt: skip


def downgrade() -> None:
    op.execute(
        """
        DELETE FROM role_administrator_relations;
        DELETE FROM administrators;
        DELETE FROM role_role_relations;
        DELETE FROM acl_role_relations;
        DELETE FROM roles;
        DELETE FROM acls;
        DELETE FROM tenants;
        DELETE FROM vm_states; DELETE FROM vm_cmds; DELETE FROM user_states;
        DELETE FROM user_cmds; DELETE FROM host_states; DELETE FROM host_cmds;
        """
    )
