"""The fleet: session history, policies, node join tokens.

- ``session_history``: one row per end-user login (whatever the result) and per
  connection to a desktop (``connect``/``takeover``), with who, from where, which
  VM/node (names copied: the rows outlive what they name), when it ended and why.
- ``policies``: the per-tenant/OSF rules the policy leader applies (idle stop/suspend,
  maximum session length, scheduled start/stop, warm pool).
- ``node_join_tokens``: ``qvd node token``'s one-time passes for ``qvd node join``
  (SHA-256 only).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qvd.db.seed_acls import POLICY_ACLS, POLICY_ROLE_PARENTS, POLICY_ROLES

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# the same expression as qvd.db.models.UNPRINTABLE (a migration never imports models)
UNPRINTABLE = r"[\u0001-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"


def upgrade() -> None:
    op.create_table(
        "session_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("login", sa.String(length=128), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=True),
        sa.Column("vm_name", sa.String(length=64), nullable=True),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.Column("host_name", sa.String(length=64), nullable=True),
        sa.Column("client_address", sa.String(length=45), nullable=True),
        sa.Column("client_info", sa.String(length=128), nullable=True),
        sa.Column("transport", sa.String(length=8), nullable=True),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("bytes_in", sa.BigInteger(), nullable=True),
        sa.Column("bytes_out", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('login', 'connect', 'takeover')", name=op.f("ck_session_history_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_history")),
    )
    op.create_index(
        "ix_session_history_tenant_started", "session_history", ["tenant_id", "started_at"]
    )
    op.create_index(op.f("ix_session_history_user_id"), "session_history", ["user_id"])
    op.create_index(op.f("ix_session_history_vm_id"), "session_history", ["vm_id"])
    op.create_index(op.f("ix_session_history_started_at"), "session_history", ["started_at"])
    _seed_session_acls()

    op.create_table(
        "policies",
        sa.Column("creation_admin_id", sa.Integer(), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("id", sa.Integer(), sa.Identity(start=10000), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("osf_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=True),
        sa.Column("at_minute", sa.Integer(), nullable=True),
        sa.Column("weekdays", sa.Integer(), server_default="127", nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('idle_stop', 'idle_suspend', 'max_session', 'scheduled_start',"
            " 'scheduled_stop', 'warm_pool')",
            name=op.f("ck_policies_kind"),
        ),
        sa.CheckConstraint(
            "minutes IS NULL OR minutes > 0", name=op.f("ck_policies_minutes_positive")
        ),
        sa.CheckConstraint(
            "at_minute IS NULL OR at_minute BETWEEN 0 AND 1439", name=op.f("ck_policies_at_minute")
        ),
        sa.CheckConstraint("weekdays BETWEEN 0 AND 127", name=op.f("ck_policies_weekdays")),
        sa.CheckConstraint("size IS NULL OR size >= 0", name=op.f("ck_policies_size")),
        sa.CheckConstraint(f"name !~ '{UNPRINTABLE}'", name=op.f("ck_policies_name_printable")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_policies_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["osf_id"], ["osfs.id"], name=op.f("fk_policies_osf_id_osfs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_policies_tenant_id_name")),
    )
    op.create_index(op.f("ix_policies_tenant_id"), "policies", ["tenant_id"])

    op.create_table(
        "node_join_tokens",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("host_name", sa.String(length=64), nullable=True),
        sa.Column("expiration", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by_host", sa.String(length=64), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_node_join_tokens")),
    )
    op.create_index(op.f("ix_node_join_tokens_expiration"), "node_join_tokens", ["expiration"])
    _seed_policy_acls()


def _seed_policy_acls() -> None:
    """The policies' ACLs and built-in roles (``qvd.db.seed_acls.POLICY_*``): Policies
    Reader/Creator/Updater/Eraser/Manager, inherited by the QVD role of each kind."""
    conn = op.get_bind()
    acl_ids = {
        name: conn.execute(
            sa.text("INSERT INTO acls (name) VALUES (:n) RETURNING id"), {"n": name}
        ).scalar_one()
        for name in POLICY_ACLS
    }
    role_ids: dict[str, int] = {}
    for spec in POLICY_ROLES:
        role_ids[spec.name] = conn.execute(
            sa.text(
                "INSERT INTO roles (tenant_id, name, internal, fixed, description)"
                " VALUES (-1, :n, :i, true, 'Built-in role') RETURNING id"
            ),
            {"n": spec.name, "i": spec.internal},
        ).scalar_one()
        for acl in spec.acls:
            conn.execute(
                sa.text(
                    "INSERT INTO acl_role_relations (acl_id, role_id, positive)"
                    " VALUES (:a, :r, true)"
                ),
                {"a": acl_ids[acl], "r": role_ids[spec.name]},
            )
    inherit = sa.text(
        "INSERT INTO role_role_relations (inheritor_id, inherited_id) VALUES (:heir, :parent)"
    )
    for spec in POLICY_ROLES:
        for parent in spec.inherits:
            conn.execute(inherit, {"heir": role_ids[spec.name], "parent": role_ids[parent]})
    for heir, parent in POLICY_ROLE_PARENTS.items():
        heir_id = conn.execute(
            sa.text("SELECT id FROM roles WHERE tenant_id = -1 AND name = :n"), {"n": heir}
        ).scalar_one()
        conn.execute(inherit, {"heir": heir_id, "parent": role_ids[parent]})


# The session history's ACL and the built-in roles that hold it (those that read the
# log). Data of this revision, as 0003's seed: a later change is a new migration.
SESSION_ACLS = {"session.see": ("Logs Manager",)}


def _seed_session_acls() -> None:
    for acl, roles in SESSION_ACLS.items():
        op.execute(sa.text("INSERT INTO acls (name) VALUES (:a)").bindparams(a=acl))
        op.execute(
            sa.text(
                "INSERT INTO acl_role_relations (acl_id, role_id, positive) "
                "SELECT a.id, r.id, true FROM acls a JOIN roles r ON r.name = ANY(:roles) "
                " AND r.tenant_id = -1 AND r.fixed WHERE a.name = :a"
            ).bindparams(a=acl, roles=list(roles))
        )


def downgrade() -> None:
    op.execute(
        "DELETE FROM roles WHERE tenant_id = -1 AND name LIKE 'Policies %';"
        " DELETE FROM acls WHERE name LIKE 'policy.%'"
    )
    op.execute(
        sa.text(
            "DELETE FROM acl_role_relations WHERE acl_id IN "
            "(SELECT id FROM acls WHERE name = ANY(:n))"
        ).bindparams(n=list(SESSION_ACLS))
    )
    op.execute(sa.text("DELETE FROM acls WHERE name = ANY(:n)").bindparams(n=list(SESSION_ACLS)))
    op.drop_table("node_join_tokens")
    op.drop_table("policies")
    op.drop_table("session_history")
