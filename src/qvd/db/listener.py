"""LISTEN on NOTIFY channels over a dedicated psycopg connection.

Daemons wake on these; a notification is a hint to re-read rows, never the only
source of truth (every waiter also polls slowly, DESIGN §1).

A LISTEN does not survive its connection: after a failover (or any loss) the owner
makes a new ``Listener`` — which connects to whichever host is the primary now — and
re-reads everything it cares about, because what was notified meanwhile is gone.
The connection sends TCP keepalives (unless the target sets its own), so a listener
on a primary that vanished from the network fails within seconds instead of waiting
forever on a silent socket.
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

__all__ = ["LISTEN_KEEPALIVES", "Listener", "Notification"]

# an idle LISTEN connection learns of a dead peer only by probing: after 5 s of
# silence, 3 probes 2 s apart (ignored on unix sockets)
LISTEN_KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    channel: str
    payload: dict[str, Any]
    pid: int


class Listener:
    """A connection that listens on channels; ``wait`` returns what arrived."""

    def __init__(self, target: DatabaseTarget, channels: Iterable[str] = ()) -> None:
        keepalives = {k: v for k, v in LISTEN_KEEPALIVES.items() if k not in target.params}
        self._conn = target.connect(autocommit=True, **keepalives)
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
