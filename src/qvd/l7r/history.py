"""Session history: every end-user login, connect, takeover and disconnect as a row of
``session_history`` (who, from where, which VM and node, when, how it ended).

The recorder never blocks or fails a login or a connect: ``login``,
``connect_started`` and ``connect_ended`` only put a write on a bounded queue that one
writer thread empties, each write in its own transaction. A full queue drops the write,
a database error drops it too; both are logged, neither reaches the flow.
``connect_started`` answers a ``HistoryEntry`` whose row id the writer fills in: the
end of a connect follows its start through the same queue, so it always finds it.

Names are copied into the row (the user's login, the VM's and node's names): the
history outlives what it names. The password never reaches a row: a failed login is
recorded with the login its ``Authorization`` claims (``wire.basic_login``), cleaned
of unprintable characters and cut to the column.

Pure helpers (no I/O): ``failure_code`` (an exception as a short result code),
``end_reason`` (why a relay ended, from how it ended and the VM's row at that time),
``client_info`` (the client's User-Agent or its ``qvd.client.*`` parameters).
``close_open_rows`` closes a dead node's open connects (``node_lost``); the HKD calls it
for the peers it marks lost, and the recorder for its own node when it starts (rows a
crash of this L7R left open).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection, Engine, text

from qvd.config import Config
from qvd.db.failover import run_transaction
from qvd.db.session_history import close_open_rows
from qvd.l7r.auth import Principal
from qvd.l7r.auth.credentials import split_login
from qvd.l7r.errors import L7rError
from qvd.l7r.store import Runtime
from qvd.l7r.wire import basic_login

__all__ = [
    "END_REASONS",
    "HistoryEntry",
    "HistoryRecorder",
    "RelayEnd",
    "Traffic",
    "claimed_login",
    "client_info",
    "close_open_rows",
    "end_reason",
    "failure_code",
    "record_login",
]

log = logging.getLogger(__name__)

END_REASONS: Final = ("disconnect", "taken_over", "suspended", "stopped", "node_lost", "error")
QUEUE_SIZE = 10_000  # writes waiting for the writer; past that they are dropped
_LOGIN_MAX, _INFO_MAX, _DETAIL_MAX, _CODE_MAX, _ADDR_MAX = 128, 128, 256, 32, 45
_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _clean(value: str | None, limit: int) -> str | None:
    """``value`` without unprintable characters, cut to ``limit`` characters."""
    if value is None:
        return None
    return _UNPRINTABLE.sub("?", value)[:limit]


def failure_code(exc: BaseException) -> str:
    """A short result code for a failed login or connect: the error's class in
    snake case (``Unauthorized`` → ``unauthorized``, ``TooManyAttempts`` →
    ``too_many_attempts``)."""
    return _CAMEL.sub("_", type(exc).__name__).lower()[:_CODE_MAX]


def client_info(user_agent: str | None, params: Mapping[str, str]) -> str | None:
    """What the client says it is: its User-Agent, else its ``qvd.client.*`` version
    parameters (``os``, ``version``, …) as ``key=value`` pairs; cut to the column."""
    if user_agent:
        return _clean(user_agent.strip(), _INFO_MAX) or None
    pairs = [
        f"{k.removeprefix('qvd.client.')}={v}"
        for k, v in sorted(params.items())
        if k.startswith("qvd.client.") and k not in ("qvd.client.geometry",)
        and ("version" in k or k.endswith((".os", ".client", ".name")))
    ]  # fmt: skip
    return _clean(" ".join(pairs), _INFO_MAX) or None


def claimed_login(login: str) -> str:
    """The login a failed attempt claimed, safe to store."""
    return _clean(login.strip(), _LOGIN_MAX) or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayEnd:
    """How a relay ended, as the door that ran it saw it."""

    aborted: bool = False  # the session's abort was called (a takeover, or shutdown)
    shutting_down: bool = False  # the L7R is stopping
    failed: bool = False  # the relay ended on an error of its own


def end_reason(end: RelayEnd, runtime: Runtime | None, host_id: int) -> str:
    """Why a connection ended (one of ``END_REASONS``), from how its relay ended and
    the VM's row read just before the session was released (None: not readable)."""
    if runtime is not None:
        if runtime.vm_state != "running" or runtime.vm_cmd == "stop":
            return "stopped"  # the VM stopped (or its node was lost) under the session
        if runtime.user_cmd == "abort" or (
            runtime.l7r_host_id is not None and runtime.l7r_host_id != host_id
        ):
            return "taken_over"
    if end.aborted and not end.shutting_down:
        return "taken_over"
    if end.failed:
        return "error"
    return "disconnect"


@dataclass(slots=True)
class Traffic:
    """Bytes one connection relayed: ``up`` from the client to the desktop
    (``bytes_in``), ``down`` back (``bytes_out``). Counted by the event loop only."""

    up: int = 0
    down: int = 0


@dataclass(slots=True)
class HistoryEntry:
    """One recorded connect: its row id once the writer has inserted it."""

    row_id: int | None = None
    ended: bool = False
    traffic: Traffic = field(default_factory=Traffic)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Who:
    tenant_id: int | None
    user_id: int | None
    login: str


_INSERT = text(
    """
    INSERT INTO session_history (kind, result, detail, tenant_id, user_id, login, vm_id,
                                 vm_name, host_id, host_name, client_address, client_info,
                                 transport, ended_at, end_reason)
    SELECT :kind, :result, :detail, t.id,
           COALESCE(:user_id, (SELECT u.id FROM users u
                                WHERE u.tenant_id = t.id AND u.login = :login)),
           :login, :vm_id, (SELECT name FROM vms WHERE id = :vm_id), :host_id,
           (SELECT name FROM hosts WHERE id = :host_id), :address, :info, :transport,
           CASE WHEN :closed THEN now() END, :end_reason
      FROM (SELECT COALESCE(:tenant_id,
                            (SELECT id FROM tenants WHERE name = :tenant_name AND id > 0))
                   AS id) t
    RETURNING id
    """
)
_END = text(
    """
    UPDATE session_history SET ended_at = now(), end_reason = :reason, bytes_in = :bin,
           bytes_out = :bout
     WHERE id = :id AND ended_at IS NULL
    """
)
_Write = Callable[[Connection], None]


def _claimed_tenant(config: Config, claimed: str) -> tuple[str, str | None]:
    """(login, tenant name) a failed Basic login claimed, split as the chain does;
    the raw claim and no tenant when it breaks the rules."""
    try:
        return split_login(
            claimed,
            separators=config.get("l7r.auth.plugin.default.separators"),
            default_tenant=config.get("l7r.auth.plugin.default.tenant"),
            case_sensitive=config.get_bool("model.user.login.case-sensitive"),
        )
    except L7rError:
        return claimed, None


async def record_login(
    recorder: HistoryRecorder,
    config: Config,
    login: asyncio.Future[Principal],
    headers: Mapping[str, str],
    address: str,
    info: str | None,
    transport: str,
) -> Principal:
    """Await a login through the auth chain and record it, ok or failed (the failure
    is raised again as it was)."""
    try:
        principal = await login
    except Exception as exc:
        claimed = basic_login(headers.get("authorization", ""))
        scheme = headers.get("authorization", "").strip().partition(" ")[0].lower()
        name, tenant = _claimed_tenant(config, claimed) if scheme == "basic" else ("", None)
        recorder.login(
            login=name, tenant_name=tenant, address=address, info=info, transport=transport,
            result=failure_code(exc), detail=exc.message if isinstance(exc, L7rError) else None,
        )  # fmt: skip
        raise
    recorder.login(
        login=principal.login, tenant_id=principal.tenant_id, user_id=principal.user_id,
        address=address, info=info, transport=transport, result="ok",
        detail="token" if principal.token_expires is not None or principal.token_vm_id else None,
    )  # fmt: skip
    return principal


class HistoryRecorder:
    """The L7R's recorder for the node ``host_id`` (one writer thread)."""

    def __init__(
        self, engine: Engine, host_id: int, *, capacity: int = QUEUE_SIZE,
        failover_wait: float = 15.0,
    ) -> None:  # fmt: skip
        self._engine = engine
        self._failover_wait = failover_wait  # a write lost before COMMIT: again, this long
        self.host_id = host_id
        self._queue: queue.Queue[_Write | None] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        self.dropped = 0  # writes lost to a full queue or a database error

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Close what a crash of this node's L7R left open, then start writing."""
        self._put(lambda conn: self._closed_own(close_open_rows(conn, [self.host_id])))
        self._thread = threading.Thread(target=self._run, name="l7r-history", daemon=True)
        self._thread.start()

    @staticmethod
    def _closed_own(count: int) -> None:
        if count:
            log.info("session history: %d connection(s) left open by a crash closed", count)

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (for up to ``timeout`` s), then end the writer."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("session history: queue still full at shutdown; writes dropped")
        self._thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every write queued so far is done (tests, shutdown)."""
        done = threading.Event()
        if not self._put(lambda conn: done.set()):
            return False
        return done.wait(timeout)

    # ---- what the doors record -------------------------------------------------------------
    def login(
        self,
        *,
        login: str,
        address: str,
        result: str,
        detail: str | None = None,
        tenant_id: int | None = None,
        tenant_name: str | None = None,
        user_id: int | None = None,
        info: str | None = None,
        transport: str | None = None,
    ) -> None:
        """One login through the L7R's authentication (``result`` ok or a failure code;
        a failed one names its tenant by ``tenant_name``, resolved by the writer)."""
        who = _Who(tenant_id=tenant_id, user_id=user_id, login=claimed_login(login))
        self._insert(
            kind="login", result=result, detail=detail, who=who, tenant_name=tenant_name,
            vm_id=None, address=address, info=info, transport=transport, closed=True,
        )  # fmt: skip

    def connect_started(
        self,
        *,
        tenant_id: int,
        user_id: int,
        login: str,
        vm_id: int,
        address: str,
        info: str | None,
        transport: str,
        takeover: bool,
    ) -> HistoryEntry:
        """A connection now relays to the desktop; its entry, for ``connect_ended``."""
        entry = HistoryEntry()
        who = _Who(tenant_id=tenant_id, user_id=user_id, login=claimed_login(login))
        self._insert(
            kind="takeover" if takeover else "connect", result="ok", detail=None, who=who,
            tenant_name=None, vm_id=vm_id, address=address, info=info, transport=transport,
            closed=False, entry=entry,
        )  # fmt: skip
        return entry

    def connect_failed(
        self,
        *,
        tenant_id: int,
        user_id: int,
        login: str,
        vm_id: int,
        address: str,
        info: str | None,
        transport: str,
        error: BaseException,
        detail: str | None,
    ) -> None:
        """A connect that never relayed (the VM did not start, the client left, …)."""
        who = _Who(tenant_id=tenant_id, user_id=user_id, login=claimed_login(login))
        self._insert(
            kind="connect", result=failure_code(error), detail=detail, who=who,
            tenant_name=None, vm_id=vm_id, address=address, info=info, transport=transport,
            closed=True, end_reason="error",
        )  # fmt: skip

    def connect_ended(
        self, entry: HistoryEntry, reason: str, bytes_in: int, bytes_out: int
    ) -> None:
        """The connection of ``entry`` ended (``reason``: one of ``END_REASONS``)."""
        if entry.ended:
            return
        entry.ended = True
        args = {"reason": reason, "bin": bytes_in, "bout": bytes_out}

        def write(conn: Connection) -> None:
            if entry.row_id is not None:  # None: its insert was dropped
                conn.execute(_END, {**args, "id": entry.row_id})

        self._put(write)

    # ---- the writer ----------------------------------------------------------------------
    def _insert(
        self,
        *,
        kind: str,
        result: str,
        detail: str | None,
        who: _Who,
        tenant_name: str | None,
        vm_id: int | None,
        address: str,
        info: str | None,
        transport: str | None,
        closed: bool,
        end_reason: str | None = None,
        entry: HistoryEntry | None = None,
    ) -> None:
        args = {
            "kind": kind, "result": result[:_CODE_MAX], "detail": _clean(detail, _DETAIL_MAX),
            "tenant_id": who.tenant_id, "tenant_name": tenant_name, "user_id": who.user_id,
            "login": who.login, "vm_id": vm_id, "host_id": self.host_id,
            "address": _clean(address, _ADDR_MAX), "info": _clean(info, _INFO_MAX),
            "transport": transport, "closed": closed, "end_reason": end_reason,
        }  # fmt: skip

        def write(conn: Connection) -> None:
            row_id = conn.execute(_INSERT, args).scalar_one()
            if entry is not None:
                entry.row_id = int(row_id)

        self._put(write)

    def _put(self, write: _Write) -> bool:
        try:
            self._queue.put_nowait(write)
        except queue.Full:
            self.dropped += 1
            log.warning("session history: the queue is full; a record was dropped")
            return False
        return True

    def _run(self) -> None:
        while True:
            write = self._queue.get()
            if write is None:
                return
            try:  # a failover: run again on the new primary (never after an unknown COMMIT)
                run_transaction(
                    self._engine, write, wait=self._failover_wait, what="session history"
                )
            except Exception as exc:  # the database is away: the record is lost, not the login
                self.dropped += 1
                log.warning("session history: a record was dropped: %s", exc)
