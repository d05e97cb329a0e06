"""Login hardening: bearer tokens die with the password they were issued under, and a
TOTP code is used once.

- ``user_tokens.password_fp``: SHA-256 (hex) of the user's stored password hash when the
  token was issued; a token whose user's hash differs is refused. Tokens that exist at
  upgrade time get '' and so end (they were issued without this binding).
- ``user_totp_uses``: the last one-time-code step each user logged in with, from which
  address, when, and how often it was used again (once, by the same address, for the
  QVD client's list → connect pair).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "user_tokens",
        sa.Column("password_fp", sa.String(length=64), server_default="", nullable=False),
    )
    op.create_table(
        "user_totp_uses",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column(
            "used_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("reuses", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_totp_uses_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_totp_uses")),
    )


def downgrade() -> None:
    op.drop_table("user_totp_uses")
    op.drop_column("user_tokens", "password_fp")
