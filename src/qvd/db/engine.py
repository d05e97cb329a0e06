"""SQLAlchemy engines and sessions over a :class:`DatabaseTarget`, and the libpq limits
that keep a call from hanging on a dead peer (:class:`ConnectionLimits`)."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, sessionmaker

from qvd.db.errors import DatabaseUnreachable
from qvd.db.failover import FAILOVER_SQLSTATES
from qvd.db.target import DatabaseTarget

__all__ = [
    "ConnectionLimits",
    "engine_target",
    "limited_target",
    "make_engine",
    "make_sessionmaker",
]

# the target each engine of make_engine connects to (for a LISTEN connection of its own)
_TARGETS: weakref.WeakKeyDictionary[Engine, DatabaseTarget] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """How long a database call may wait on the network or the server.

    ``connect_timeout``: whole seconds for a connection (libpq treats < 2 as 2);
    ``user_timeout``: seconds sent data may stay unacknowledged before the kernel
    drops the connection (TCP_USER_TIMEOUT), and the keepalive probing of an idle
    connection gives up after about as long; ``statement_timeout``: seconds one
    statement may run on the server (None: the server's own setting). Unix-socket
    connections ignore the TCP ones."""

    connect_timeout: int
    user_timeout: float
    statement_timeout: float | None

    def libpq_params(self) -> dict[str, str]:
        idle = max(1, math.floor(self.user_timeout / 2))
        interval = 1
        count = max(1, math.ceil((self.user_timeout - idle) / interval))
        return {
            "connect_timeout": str(max(2, self.connect_timeout)),
            "keepalives": "1",
            "keepalives_idle": str(idle),
            "keepalives_interval": str(interval),
            "keepalives_count": str(count),
            "tcp_user_timeout": str(max(1, round(self.user_timeout * 1000))),
        }

    def server_options(self) -> str:
        if self.statement_timeout is None:
            return ""
        return f"-c statement_timeout={max(1, round(self.statement_timeout * 1000))}"

    @classmethod
    def for_failover(cls, target: DatabaseTarget) -> ConnectionLimits:
        """For a daemon's pool that must notice a primary that vanished from the
        network (a power loss, not a crash that resets connections): keepalives and a
        TCP user timeout of 10 s, the target's connect timeout, no statement timeout
        (the L7R and the API: their long statements are their own business)."""
        return cls(
            connect_timeout=int(target.params.get("connect_timeout", "20")),
            user_timeout=10.0,
            statement_timeout=None,
        )


def limited_target(target: DatabaseTarget, limits: ConnectionLimits) -> DatabaseTarget:
    """``target`` with ``limits`` added to its connection parameters (any ``options``
    it already has are kept)."""
    params = {**target.params, **limits.libpq_params()}
    options = " ".join(o for o in (target.params.get("options", ""), limits.server_options()) if o)
    if options:
        params["options"] = options
    return DatabaseTarget(params, target.embedded)


def make_engine(
    target: DatabaseTarget, *, limits: ConnectionLimits | None = None, **engine_kwargs: Any
) -> Engine:
    """An engine whose connections come from ``target`` (no password in any URL), with
    ``limits`` on every connection if given."""
    if limits is not None:
        target = limited_target(target, limits)

    def connect() -> psycopg.Connection[Any]:
        try:
            return target.connect()
        except psycopg.OperationalError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = lines[-1] if lines else "no reason given"
            hint = (
                " (this node's embedded PostgreSQL: is `qvd up` running?)"
                if target.embedded
                else ""
            )
            raise DatabaseUnreachable(
                f"cannot connect to {target.describe()}{hint}: {reason}"
            ) from None

    # a pooled connection is checked before use (a dead one, and every older one, is
    # replaced: after a failover the pool reconnects to the new primary by itself)
    engine_kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine("postgresql+psycopg://", creator=connect, **engine_kwargs)
    event.listen(engine, "handle_error", _failover_is_a_disconnect)
    _TARGETS[engine] = target
    return engine


def engine_target(engine: Engine) -> DatabaseTarget | None:
    """The target ``engine`` connects to (with its limits), if ``make_engine`` made it."""
    return _TARGETS.get(engine)


def _failover_is_a_disconnect(context: ExceptionContext) -> None:
    """A server that shuts down, or that answers as a standby (a demoted primary,
    still up), is as good as gone: drop the pool's connections so that the next
    checkout connects anew and finds the primary."""
    orig = context.original_exception
    if isinstance(orig, psycopg.Error) and orig.sqlstate in FAILOVER_SQLSTATES:
        context.is_disconnect = True


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
