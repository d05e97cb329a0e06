"""The API's one LISTEN connection, fanned out to its ``/api/ws`` sockets.

:class:`NotifyHub` holds a single psycopg connection per API process that LISTENs on
every channel the triggers send (``qvd.db.channels``), and wakes the
:class:`Subscription` of each socket whose channels and tenant a notification
concerns. It starts with the first subscription, stops :data:`LINGER` seconds after
the last one, and reconnects with a backoff; while it is down, subscriptions are told
so and fall back to polling. :func:`channels_for` maps an action to the channels
whose notifications can change its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from qvd.api.actions.core import Action
from qvd.db import engine_target
from qvd.db.channels import (
    CONFIG_CHANGED,
    DI_RUNTIMES_CHANGED,
    DI_TAGS_CHANGED,
    USER_BLOCKED,
    VM_BLOCKED,
    parse_payload,
)
from qvd.db.listener import LISTEN_KEEPALIVES

__all__ = [
    "ALL_CHANNELS",
    "CHANNELS_BY_ACTION",
    "CHANNELS_BY_OBJECT",
    "LINGER",
    "NotifyHub",
    "Subscription",
    "channels_for",
]

log = logging.getLogger(__name__)

LISTEN_WAIT = 5.0  # seconds a new socket waits for LISTEN before it falls back to polling
LINGER = 10.0  # seconds the LISTEN connection outlives the last socket
RETRY_MIN, RETRY_MAX = 0.5, 10.0  # reconnection backoff of the LISTEN connection


def _crud(noun: str, *verbs: str) -> frozenset[str]:
    """``<noun>_created`` / ``_changed`` / ``_deleted`` (the ``qvd_notify_object``
    trigger; ``vm_changed`` and ``host_changed`` also come from the runtime rows)."""
    return frozenset(f"{noun}_{verb}" for verb in verbs or ("created", "changed", "deleted"))


# What each object's list shows, and so which channels can change it (the channels
# are those the triggers of migration 0002 send; see ``qvd.db.channels``).
CHANNELS_BY_OBJECT: Mapping[str, frozenset[str]] = {
    # state, user state, host, expirations (vm_changed), blocked, the user's, OSF's
    # and host's names, and the DI the VM's tag resolves to
    "vm": _crud("vm")
    | {VM_BLOCKED}
    | _crud("user", "changed")
    | _crud("osf", "changed")
    | _crud("host", "changed")
    | _crud("di", "changed", "deleted")
    | {DI_TAGS_CHANGED},
    # number_of_vms, number_of_vms_connected
    "user": _crud("user") | {USER_BLOCKED} | _crud("vm"),
    # state and blocked (host runtimes), number_of_vms_connected
    "host": _crud("host") | _crud("vm", "changed"),
    # number_of_vms, number_of_dis
    "osf": _crud("osf") | _crud("vm", "created", "deleted") | _crud("di", "created", "deleted"),
    # state and progress, tags, the OSF's name
    "di": _crud("di") | {DI_RUNTIMES_CHANGED, DI_TAGS_CHANGED} | _crud("osf", "changed"),
    "tenant": _crud("tenant"),
    # roles by name; current_admin_setup shows the tenant's name and block
    "administrator": _crud("administrator") | _crud("role") | _crud("tenant", "changed"),
    "role": _crud("role"),
    "acl": _crud("role") | _crud("administrator"),
    "config": frozenset({CONFIG_CHANGED}),
    # "log", "property" (and property lists), "tenant_view", "admin_view": no trigger on
    # their tables, so polled every POLL seconds
}

# Actions whose result does not follow their object's tables.
CHANNELS_BY_ACTION: Mapping[str, frozenset[str]] = {
    "config_wat_get_list": _crud("tenant"),  # the tenants' language and block
    "config_wat_get_details": _crud("tenant"),
    "dis_in_staging": frozenset(),  # files in the staging directory: polled
    "qvd_objects_statistics": (
        _crud("user")
        | _crud("vm")
        | _crud("host")
        | _crud("osf")
        | _crud("di")
        | {USER_BLOCKED, VM_BLOCKED, DI_RUNTIMES_CHANGED}
    ),
}

ALL_CHANNELS: frozenset[str] = frozenset().union(
    *CHANNELS_BY_OBJECT.values(), *CHANNELS_BY_ACTION.values()
)


def channels_for(action: Action) -> frozenset[str]:
    """The channels whose notifications can change ``action``'s result (empty: poll)."""
    by_action = CHANNELS_BY_ACTION.get(action.name)
    if by_action is not None:
        return by_action
    return CHANNELS_BY_OBJECT.get(action.qvd_object or "", frozenset())


# ------------------------------------------------------------------ the fan-out


@dataclass(eq=False, slots=True)
class Subscription:
    """One socket's interest: channels, and the tenant whose changes concern it."""

    channels: frozenset[str]
    tenant_id: int | None  # None: every tenant (a superadmin)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: bool = False  # a relevant notification arrived since the last run

    def concerns(self, channel: str, payload: str) -> bool:
        if channel not in self.channels:
            return False
        if self.tenant_id is None:
            return True
        try:
            tenant = parse_payload(payload).get("tenant_id")
        except ValueError:
            return True
        # hosts, tags and the global tenant (-1) concern everybody
        return tenant is None or tenant in (-1, self.tenant_id)

    def notify(self) -> None:
        self.dirty = True
        self.wake.set()


Connector = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


class NotifyHub:
    """One LISTEN connection for every socket of this process, run by an asyncio task
    that starts with the first subscriber and ends :data:`LINGER` seconds after the
    last. A lost connection is re-made with backoff; meanwhile sockets poll every
    :data:`POLL` seconds, and once it is back every socket re-runs its action."""

    def __init__(self, connect: Connector, channels: Iterable[str] = ALL_CHANNELS) -> None:
        self._connect = connect
        self._channels = sorted(set(channels))
        self._subs: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._linger: asyncio.TimerHandle | None = None

    @classmethod
    def for_engine(cls, engine: Engine) -> NotifyHub:
        """A hub that connects where ``engine`` does (same parameters, own connection:
        every host of a multi-host target, so it follows a failover)."""
        target = engine_target(engine)
        if target is not None:
            params: dict[str, Any] = {**LISTEN_KEEPALIVES, **target.params}

            async def connect_to_target() -> psycopg.AsyncConnection[Any]:
                return await psycopg.AsyncConnection.connect(
                    **{**params, "application_name": "qvd-api-listen"}, autocommit=True
                )

            return cls(connect_to_target)

        def conninfo() -> tuple[str, str]:
            with engine.connect() as conn:
                raw = conn.connection.driver_connection
                if not isinstance(raw, psycopg.Connection):  # pragma: no cover
                    raise TypeError("the API engine does not use psycopg")
                return raw.info.dsn, raw.info.password

        async def connect() -> psycopg.AsyncConnection[Any]:
            dsn, password = await run_in_threadpool(conninfo)
            extra: dict[str, Any] = {"password": password} if password else {}
            return await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, application_name="qvd-api-listen", **extra
            )

        return cls(connect)

    @property
    def listening(self) -> bool:
        return self._ready.is_set()

    async def subscribe(self, sub: Subscription) -> bool:
        """Add ``sub`` (starting the listener if needed). True once LISTEN is active;
        False if it is not within :data:`LISTEN_WAIT` seconds (the socket polls)."""
        self._adopt_loop()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not sub.channels:  # nothing to listen for: the socket polls
            return False
        self._subs.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="qvd-api-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), LISTEN_WAIT)
        return self.listening

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        if not self._subs and self._task is not None and self._loop is not None:
            if self._linger is not None:
                self._linger.cancel()
            self._linger = self._loop.call_later(LINGER, self._stop_if_idle)

    def _adopt_loop(self) -> None:
        """Bind to the running loop (an app may outlive one loop, in tests)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._task, self._linger = loop, None, None
            self._subs.clear()
            self._ready = asyncio.Event()

    def _stop_if_idle(self) -> None:
        self._linger = None
        if not self._subs and self._task is not None:
            self._task.cancel()
            self._task = None

    def _dispatch(self, channel: str, payload: str) -> None:
        for sub in self._subs:
            if sub.concerns(channel, payload):
                sub.notify()

    async def _run(self) -> None:
        delay, lost = RETRY_MIN, False
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:  # any failure to connect is retried
                log.warning("the API cannot LISTEN (retrying in %.1f s): %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                lost = True
                continue
            try:
                await conn.execute(
                    sql.SQL("; ").join(
                        sql.SQL("LISTEN {}").format(sql.Identifier(c)) for c in self._channels
                    )
                )
                self._ready.set()
                delay = RETRY_MIN
                if lost:  # notifications sent meanwhile are gone: everybody re-runs
                    for sub in self._subs:
                        sub.notify()
                async for note in conn.notifies():
                    self._dispatch(note.channel, note.payload)
            except Exception as exc:  # the sockets poll until it is back
                log.warning("the API's LISTEN connection failed (reconnecting): %s", exc)
                lost = True
            finally:
                self._ready.clear()
                await conn.close()
            await asyncio.sleep(delay)
