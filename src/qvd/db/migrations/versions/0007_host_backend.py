"""What each node's hypervisor backend chose when its HKD started.

- ``host_runtimes.backend_facts``: a JSON object of short words written by the HKD at
  start (``{"backend": "kvm", "accel": "tcg", ...}``, from ``Backend.facts()``), shown
  by the API's ``/metrics`` as ``qvd_host_backend``. NULL until the node's HKD starts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("host_runtimes", sa.Column("backend_facts", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("host_runtimes", "backend_facts")
