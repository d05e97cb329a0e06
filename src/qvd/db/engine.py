"""SQLAlchemy engines and sessions over a :class:`DatabaseTarget`."""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from qvd.db.errors import DatabaseUnreachable
from qvd.db.target import DatabaseTarget

__all__ = ["make_engine", "make_sessionmaker"]


def make_engine(target: DatabaseTarget, **engine_kwargs: Any) -> Engine:
    """An engine whose connections come from ``target`` (no password in any URL)."""

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

    engine_kwargs.setdefault("pool_pre_ping", True)
    return create_engine("postgresql+psycopg://", creator=connect, **engine_kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
