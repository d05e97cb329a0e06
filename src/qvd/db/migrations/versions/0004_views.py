"""WAT views: per-tenant defaults and per-administrator choices of the list columns
and filters the web admin shows (reference §1.2 ``views_setups_*``, §5.9).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ENUMS = {
    "view_qvd_object_enum": (
        "user", "vm", "log", "host", "osf", "di", "role", "administrator", "tenant",
    ),
    "view_type_enum": ("list_column", "filter"),
    "view_device_type_enum": ("desktop", "mobile"),
}  # fmt: skip


def _view_columns() -> list[sa.Column[Any]]:
    enum = {n: postgresql.ENUM(*values, name=n, create_type=False) for n, values in _ENUMS.items()}
    return [
        sa.Column("qvd_object", enum["view_qvd_object_enum"], nullable=False),
        sa.Column("view_type", enum["view_type_enum"], nullable=False),
        sa.Column("device_type", enum["view_device_type_enum"], nullable=False),
        sa.Column("field", sa.String(length=1024), nullable=False),
        sa.Column("property", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("visible", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    ]


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False)


def upgrade() -> None:
    bind = op.get_bind()
    for name, values in _ENUMS.items():
        postgresql.ENUM(*values, name=name).create(bind)
    op.create_table(
        "tenant_views",
        *_view_columns(),
        _id(),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], ondelete="CASCADE",
            name=op.f("fk_tenant_views_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_views")),
        sa.UniqueConstraint(
            "tenant_id", "qvd_object", "view_type", "device_type", "field", "property",
            name="uq_tenant_views_setup",
        ),
    )  # fmt: skip
    op.create_table(
        "administrator_views",
        *_view_columns(),
        _id(),
        sa.Column("administrator_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["administrator_id"], ["administrators.id"], ondelete="CASCADE",
            name=op.f("fk_administrator_views_administrator_id_administrators"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_administrator_views")),
        sa.UniqueConstraint(
            "administrator_id", "qvd_object", "view_type", "device_type", "field", "property",
            name="uq_administrator_views_setup",
        ),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("administrator_views")
    op.drop_table("tenant_views")
    for name in reversed(_ENUMS):
        op.execute(f"DROP TYPE IF EXISTS {name}")
