"""Names are data: CHECK constraints refuse control, line-break, bidi and zero-width
characters in ``vms.name``, ``users.login``, ``tenants.name``, ``osfs.name`` and
``dis.path`` (the full rules are ``qvd.config.names``, enforced by the API).

Rows that already hold such a character are renamed, never refused (an upgrade must
not stop on data an older version let in): each bad character becomes ``_`` and
``-renamed-<id>`` is appended (unique, since ids are), the name cut to fit its
column. A renamed DI is also blocked, because its file name no longer matches the
file in the images directory. Each renamed row is logged as a warning. The
downgrade drops the constraints and keeps the new names.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# the same expression as qvd.db.models.UNPRINTABLE (a migration never imports models)
_BAD = r"[\u0001-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"

# table, column, column length
_COLUMNS = (
    ("vms", "name", 64),
    ("users", "login", 64),
    ("tenants", "name", 80),
    ("osfs", "name", 64),
    ("dis", "path", 4096),
)
_SUFFIX_ROOM = 22  # "-renamed-" and an id of up to 13 digits

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    conn = op.get_bind()
    for table, column, length in _COLUMNS:
        renamed = conn.execute(
            sa.text(
                f"UPDATE {table} SET {column} = "
                f"left(regexp_replace({column}, :bad, '_', 'g'), :keep) || '-renamed-' || id "
                f"WHERE {column} ~ :bad RETURNING id, {column}"
            ),
            {"bad": _BAD, "keep": length - _SUFFIX_ROOM},
        ).all()
        for row_id, new in renamed:
            log.warning(
                "%s %s: %s held a control, line-break or invisible character; renamed to %r",
                table, row_id, column, new,
            )  # fmt: skip
        if table == "dis" and renamed:
            conn.execute(
                sa.text("UPDATE dis SET blocked = true WHERE id = ANY(:ids)"),
                {"ids": [r[0] for r in renamed]},
            )
        op.create_check_constraint(
            op.f(f"ck_{table}_{column}_printable"), table, f"{column} !~ '{_BAD}'"
        )


def downgrade() -> None:
    for table, column, _length in reversed(_COLUMNS):
        op.drop_constraint(op.f(f"ck_{table}_{column}_printable"), table, type_="check")
