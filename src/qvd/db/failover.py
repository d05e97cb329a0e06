"""What a daemon does when its database connection is lost (a PostgreSQL failover),
and the one rule for retrying.

The retry rule (docs/ha-postgresql.md):

- A transaction whose connection was lost **before COMMIT was sent** was rolled back
  by the server (or never reached it): run it again, from its first read, on a new
  connection. Nothing of it happened, so nothing happens twice.
- A connection lost **while COMMIT was in flight** leaves the outcome unknown: the
  old primary may have committed (and, with synchronous replication, the new one has
  it too) or not. Such a transaction is never re-sent: :class:`CommitOutcomeUnknown`
  is raised, and the caller re-reads the state and decides again. QVD's claims are
  conditional ``UPDATE … WHERE <the state it moves from> RETURNING``: a pass after an
  unknown commit either finds the claim made (and goes on from the new state) or
  claims again, never both, so a command runs exactly once.
- A connection found dead when taken from the pool never carried a statement: the
  pool's pre-ping replaces it (and every older one) before use.

The HKD and the L7R follow the rule through their loops (a failed reconcile is
re-queued and re-reads the rows); the API runs each action through
:func:`run_transaction`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from qvd.db.errors import DatabaseError, DatabaseUnreachable

__all__ = [
    "CommitOutcomeUnknown",
    "lost_connection",
    "retry_delays",
    "retry_while_lost",
    "run_transaction",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# a server that is going away, coming back, or (after a failover) no longer the
# primary: the connection is of no more use, whatever psycopg says of its state
FAILOVER_SQLSTATES = frozenset(
    {
        "25006",  # read_only_sql_transaction: connected to a standby (a demoted primary)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, in recovery)
        "08000",
        "08003",
        "08006",  # connection_exception family
        "08001",
        "08004",
    }
)


# a server that answered and refused the connection for good: no failover makes a
# database, a role or a password appear, so waiting for another primary only delays the
# error (libpq gives no SQLSTATE for a refused connection: the server's message it is;
# a server speaking another language is merely waited for, as before)
REFUSALS = (
    "FATAL:  database ",  # "… does not exist"
    "FATAL:  role ",  # "… does not exist", "… is not permitted to log in"
    "FATAL:  password authentication failed",
    "FATAL:  no pg_hba.conf entry",
    "FATAL:  permission denied for database",
)


def _refused(exc: BaseException) -> bool:
    text = str(exc)
    return any(refusal in text for refusal in REFUSALS)


class CommitOutcomeUnknown(DatabaseError):
    """The connection was lost while COMMIT was in flight: the change may or may not
    have been made. Re-read before deciding again; never re-send."""


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` means the database connection is gone (or never came): a
    failover, a restart, a network cut. False for refusals of the statement itself
    (constraints, bad input), which a retry would only repeat, and for a server that
    refused the connection for good (no such database or role, a wrong password)."""
    if _refused(exc):
        return False
    if isinstance(exc, DatabaseUnreachable):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate in FAILOVER_SQLSTATES:
            return True
        return isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None
    return False


def retry_delays(wait: float, first: float = 0.1, most: float = 1.0) -> list[float]:
    """Pauses between attempts that add up to about ``wait`` seconds, doubling from
    ``first`` up to ``most``."""
    delays: list[float] = []
    delay, total = first, 0.0
    while total + delay <= wait:
        delays.append(delay)
        total += delay
        delay = min(most, delay * 2)
    return delays


def run_transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    wait: float,
    what: str = "transaction",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``work(conn)`` in one transaction, committed; re-run from the start while the
    connection is lost before COMMIT (for up to about ``wait`` seconds). A connection
    lost during COMMIT raises :class:`CommitOutcomeUnknown`; any other error is
    raised as it is."""

    def attempt() -> T:
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                result = work(conn)
            except BaseException:
                trans.rollback()
                raise
            try:
                trans.commit()
            except DBAPIError as exc:
                if lost_connection(exc):
                    raise CommitOutcomeUnknown(
                        f"{what}: the database connection was lost during COMMIT; "
                        "the change may or may not have been made"
                    ) from exc
                raise
            return result

    return retry_while_lost(
        attempt, wait=wait, what=what, sleep=sleep,
        note="database connection lost before commit, retrying",
    )  # fmt: skip


def retry_while_lost(
    call: Callable[[], T],
    *,
    wait: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    note: str = "database connection lost, retrying",
) -> T:
    """``call()`` again while it fails because the database connection was lost
    (:func:`lost_connection`, for about ``wait`` seconds); other errors as they are
    (a :class:`CommitOutcomeUnknown` among them: it is not a lost connection)."""
    delays = retry_delays(wait)
    for delay in delays:
        try:
            return call()
        except Exception as exc:
            if not lost_connection(exc):
                raise
            log.warning("%s: %s: %s", what, note, exc)
            sleep(delay)
    return call()
