"""Per-VM secrets for VMA calls, derived rather than stored.

A VM's secret is ``HMAC-SHA256(master, "<vm_id>:<run_attempts>")``: it changes at every
start (the HKD's claim increments ``vm_counters.run_attempts``), any node's HKD or L7R
can compute it from the database, and no per-VM secret sits in any table. The master
secret is generated once, in ``ssl_configs`` under ``vma.secret.master``, readable only
by the database roles of QVD's daemons.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import Connection, text

__all__ = ["MASTER_KEY", "derive_vma_secret", "master_secret"]

MASTER_KEY = "vma.secret.master"


_SELECT = text("SELECT value FROM ssl_configs WHERE key = :k")


def master_secret(conn: Connection) -> bytes:
    """The cluster's master secret, created on first use (read only, after that: the
    L7R asks for it on every connection)."""
    value = conn.execute(_SELECT, {"k": MASTER_KEY}).scalar()
    if value is None:
        conn.execute(
            text(
                "INSERT INTO ssl_configs (key, value) VALUES (:k, :v) ON CONFLICT (key) DO NOTHING"
            ),
            {"k": MASTER_KEY, "v": secrets.token_hex(32)},
        )
        value = conn.execute(_SELECT, {"k": MASTER_KEY}).scalar_one()
    return str(value).encode()


def derive_vma_secret(master: bytes, vm_id: int, run_attempt: int) -> str:
    """The secret of one run of one VM (hex, 64 characters)."""
    return hmac.new(master, f"{vm_id}:{run_attempt}".encode(), hashlib.sha256).hexdigest()
