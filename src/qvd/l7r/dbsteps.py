"""The L7R's database steps under the retry rule (``qvd.db.failover``): a connect in
flight during a PostgreSQL failover costs the user a delay, not a reconnect.

- :func:`db_step` runs one step's transaction with :func:`run_transaction`: a
  connection lost before COMMIT runs it again from its first read on a new
  connection (the pool finds the new primary), for up to ``database.failover_wait``
  seconds. A COMMIT whose outcome is unknown is never re-sent: ``after_unknown`` (a
  re-read, in a transaction of its own, under the same rule) says where the step
  stands. The connect's claims match the state they move from, so a re-read finds
  the claim made or not made, never both.
- :func:`retry_lost` re-runs a whole multi-transaction call that only reads, or whose
  writes are harmless twice (a login: its counters and token use), while its
  connection is lost.

Once ``failover_wait`` has passed without a primary the last error is raised; the
server answers it as the 503 "under maintenance" with the reason
(``errors.database_outage``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine

from qvd.config import Config
from qvd.db.failover import CommitOutcomeUnknown, retry_while_lost, run_transaction

__all__ = ["db_step", "failover_wait", "retry_lost"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def failover_wait(config: Config) -> float:
    """``database.failover_wait`` (seconds a step waits for a primary to answer)."""
    return max(0.0, config.get_float("database.failover_wait"))


def db_step(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    wait: float,
    what: str,
    after_unknown: Callable[[Connection], T] | None = None,
) -> T:
    """``work`` in one transaction under the retry rule; after a COMMIT whose outcome
    is unknown, ``after_unknown`` (default: ``work`` again, for a step that is a read
    or a conditional claim whose second run finds the first one's effect)."""
    try:
        return run_transaction(engine, work, wait=wait, what=what)
    except CommitOutcomeUnknown as exc:
        log.warning("%s: %s; reading the state again", what, exc)
        again = work if after_unknown is None else after_unknown
        try:
            return run_transaction(engine, again, wait=wait, what=f"{what} (re-read)")
        except CommitOutcomeUnknown:  # the re-read's own (empty) COMMIT: once more
            return run_transaction(engine, again, wait=wait, what=f"{what} (re-read)")


def retry_lost(
    call: Callable[[], T],
    *,
    wait: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()`` again while it fails because the database connection was lost (for
    about ``wait`` seconds); other errors as they are (``qvd.db.failover``)."""
    return retry_while_lost(call, wait=wait, what=what, sleep=sleep)
