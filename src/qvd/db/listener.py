"""LISTEN on NOTIFY channels over a dedicated psycopg connection.

Daemons wake on these; a notification is a hint to re-read rows, never the only
source of truth (every waiter also polls slowly, DESIGN §1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from qvd.db.channels import parse_payload
from qvd.db.target import DatabaseTarget

__all__ = ["Listener", "Notification"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    channel: str
    payload: dict[str, Any]
    pid: int


class Listener:
    """A connection that listens on channels; ``wait`` returns what arrived."""

    def __init__(self, target: DatabaseTarget, channels: Iterable[str] = ()) -> None:
        self._conn = target.connect(autocommit=True)
        self._channels: set[str] = set()
        self.listen(*channels)

    def listen(self, *channels: str) -> None:
        for channel in channels:
            if channel not in self._channels:
                self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._channels.add(channel)

    def unlisten(self, *channels: str) -> None:
        for channel in channels:
            if channel in self._channels:
                self._conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
                self._channels.discard(channel)

    def wait(self, timeout: float, max_count: int | None = None) -> list[Notification]:
        """Block until a notification arrives (or ``timeout`` seconds pass), then return
        it with any others already delivered; at most ``max_count``."""
        raw = list(self._conn.notifies(timeout=timeout, stop_after=1))
        if raw and (max_count is None or max_count > 1):
            more = None if max_count is None else max_count - 1
            raw += list(self._conn.notifies(timeout=0.001, stop_after=more))
        return [
            Notification(channel=n.channel, payload=parse_payload(n.payload), pid=n.pid)
            for n in raw
        ]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._conn
