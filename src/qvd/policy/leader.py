"""The policy leader: whoever holds one PostgreSQL session advisory lock.

Every node tries ``pg_try_advisory_lock`` on a connection of its own, kept open while
it leads. The lock lives as long as that database session: when the connection drops
(the node died, the network broke, the server restarted), PostgreSQL releases it and
the next node to try takes it. A leader learns it lost the lock when its connection
fails; before that, each acting transaction proves the lock is still held by the
leader's backend (``holds_lock_sql``), so a leader whose session is gone cannot act.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg

from qvd.db.listener import LISTEN_KEEPALIVES
from qvd.db.target import DatabaseTarget

__all__ = ["LOCK_KEY", "Leadership", "holds_lock_sql"]

log = logging.getLogger(__name__)

# the two-int4 form of the advisory lock key: "QVDP" and 1 (pg_locks shows them as
# classid / objid with objsubid 2)
LOCK_KEY = (0x51564450, 1)

holds_lock_sql = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
    " AND classid = %(k1)s AND objid = %(k2)s AND objsubid = 2 "
    " AND pid = %(pid)s AND granted)"
)
"""True while the backend ``pid`` holds the leader's lock (``LOCK_KEY``)."""


class Leadership:
    """One node's claim to lead: ``try_lead()`` takes or confirms the lock;
    ``backend_pid`` names the session that holds it (None when not leading)."""

    def __init__(self, target: DatabaseTarget) -> None:
        self._target = target
        self._conn: psycopg.Connection[Any] | None = None
        self.backend_pid: int | None = None

    @property
    def leading(self) -> bool:
        return self.backend_pid is not None

    def try_lead(self) -> bool:
        """Take the lock if free, or confirm this node still holds it (a round trip on
        the lock's own connection). Any failure of that connection loses leadership."""
        try:
            if self._conn is None or self._conn.closed:
                self._drop()
                # keepalives: a primary that vanished (failover) is noticed in seconds
                self._conn = self._target.connect(autocommit=True, **LISTEN_KEEPALIVES)
            if self.backend_pid is not None:
                row = self._conn.execute(
                    holds_lock_sql,
                    {"k1": LOCK_KEY[0], "k2": LOCK_KEY[1], "pid": self.backend_pid},
                ).fetchone()
                if row is not None and row[0]:
                    return True
                self.lose("the database no longer shows this node's lock")
                return False
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s), pg_backend_pid()", LOCK_KEY
            ).fetchone()
        except (psycopg.Error, OSError) as exc:
            if self.backend_pid is not None:
                self.lose(f"its database connection failed ({type(exc).__name__})")
            self._drop()
            return False
        if row is None or not row[0]:
            return False
        self.backend_pid = int(row[1])
        log.info("policy: this node leads now (backend %s)", self.backend_pid)
        return True

    def lose(self, why: str) -> None:
        """Stop leading at once (the caller stops acting before anything else)."""
        if self.backend_pid is not None:
            log.warning("policy: this node no longer leads: %s", why)
        self.backend_pid = None
        self._drop()

    def release(self) -> None:
        """Give the lock back (closing the session releases it)."""
        self.backend_pid = None
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                conn.close()
