"""Spy tickets: an administrator's one-time pass to shadow one VM from the browser.

- ``vm_spy_tickets``: the API's ``vm_spy`` writes one row per ticket (the SHA-256 of
  the ticket, never the ticket), valid 60 seconds; the user portal's ``/ws/spy`` sets
  ``used_at`` when it consumes it (once). The row names the VM, the administrator (id,
  name, tenant: copied for the ``vm_spy_end`` audit row), whether input is allowed,
  and the address the ticket was asked from. Rows die with their VM or administrator.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vm_spy_tickets",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("administrator_id", sa.Integer(), nullable=False),
        sa.Column("administrator_name", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("interactive", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("expiration", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("address", sa.String(length=45), nullable=True),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_vm_spy_tickets_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["administrator_id"],
            ["administrators.id"],
            name=op.f("fk_vm_spy_tickets_administrator_id_administrators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_vm_spy_tickets")),
    )
    op.create_index(op.f("ix_vm_spy_tickets_vm_id"), "vm_spy_tickets", ["vm_id"])
    op.create_index(op.f("ix_vm_spy_tickets_expiration"), "vm_spy_tickets", ["expiration"])


def downgrade() -> None:
    op.drop_table("vm_spy_tickets")
