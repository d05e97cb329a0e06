"""The L7R listener: TLS, the request loop over ``ServerConnection``, 102s, 101, relay.

``L7rServer(config, target, host_id, host_address)`` runs its own asyncio loop in a
thread (the HKD hosts it): ``start()`` returns once it listens, ``stop()`` closes the
listener and every session.

Who gets a thread (the rule: no user's requests can starve another's):

- the event loop does all socket work: TLS, reading heads (with the limits of
  ``wire.HeadLimits`` and the ``internal.l7r.timeout.request`` slow-loris clock), the
  102s, and the relay after the 101, which therefore holds no thread at all;
- logins (argon2: CPU work) run in a ``FairPool`` of a few threads keyed by (address,
  claimed login): a burst of distinct users is served in arrival order, one user's many
  logins take turns with everyone else's;
- quick database work (node check, VM list, tokens, the VM check, the route check, the
  session's release) runs in a small pool of its own that nothing long ever enters;
- the long requests (``connect_to_vm`` until its 101, ``stop_vm``) run in the connect
  pool, admitted by ``ConnectGate`` under caps per address (before the login), per
  user and per node (the pool's size), so an admitted request never queues for a
  thread and one user holds at most a small share of them. Over a cap: 503 at once,
  the body naming the cap (``l7r.limits.*``). A request's place is given back when
  its thread is done, even if the client left before, so closing connections does
  not let a user run more threads than the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from qvd.config import Config
from qvd.db import ConnectionLimits, DatabaseTarget, LiveConfig, config_with_db, make_engine
from qvd.l7r.auth import Principal
from qvd.l7r.core import Attached, AttachFactory, L7rCore, Sessions
from qvd.l7r.dbsteps import failover_wait
from qvd.l7r.endpoints import Node, Reply, unauthorized_headers
from qvd.l7r.errors import (
    Internal,
    L7rError,
    MethodNotAllowed,
    NotFound,
    ProtocolError,
    RequestTimeout,
    Unavailable,
    UpgradeRequired,
    database_outage,
)
from qvd.l7r.flow import ConnectFlow, Target
from qvd.l7r.history import (
    HistoryEntry,
    HistoryRecorder,
    RelayEnd,
    client_info,
    end_reason,
    record_login,
)
from qvd.l7r.limits import ConnectGate, ConnectLimits, FairPool, Ticket
from qvd.l7r.metrics import L7rMetrics
from qvd.l7r.notify import Notifier
from qvd.l7r.params import client_params, vm_id_of
from qvd.l7r.relay import CHUNK, GREETING_TIMEOUT, check_route, first_bytes, open_agent, relay
from qvd.l7r.tls import ensure_certificate, server_context
from qvd.l7r.wire import NEED_DATA, Request, ServerConnection, basic_login

__all__ = ["L7rServer"]

log = logging.getLogger(__name__)
T = TypeVar("T")

LOGIN_WORKERS = (os.cpu_count() or 1) + 2  # one per core + two waiting on the database
QUICK_WORKERS = 8  # short database work; nothing that waits for a VM comes here
EARLY_BYTES = 1024 * 1024  # kept from a client that speaks before its 101
LISTEN_BACKLOG = 1024  # a storm of connections must not overflow the accept queue
_LISTS = ("/qvd/list_of_vm", "/qvd/list_of_applications")
_AUTH_PATHS = {
    *_LISTS,
    "/qvd/connect_to_vm",
    "/qvd/stop_vm",
    "/qvd/authenticate_user",
    "/qvd/create_auth_token",
}
_LONG = ("/qvd/connect_to_vm", "/qvd/stop_vm")  # admitted by the ConnectGate


class L7rServer:
    def __init__(
        self,
        config: Config,
        target: DatabaseTarget,
        host_id: int,
        host_address: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        attach: Sequence[AttachFactory] = (),
        metrics: L7rMetrics | None = None,
    ) -> None:
        self._config = config
        self._target = target
        self.host_id = host_id
        self.host_address = host_address
        self._ssl = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._sessions = Sessions()
        self.metrics = metrics or L7rMetrics()  # served by the node's /metrics (qvd.node)
        self.metrics.watch_sessions(self._sessions.count)
        self._engine: Engine | None = None
        self._notifier: Notifier | None = None
        self._logins: FairPool | None = None
        self._quick: ThreadPoolExecutor | None = None
        self._connects: ThreadPoolExecutor | None = None
        self._gate = ConnectGate(ConnectLimits.from_config(config))
        self._attach = list(attach)
        self.attached: list[Attached] = []
        self.core: L7rCore | None = None  # set by start()
        self.history: HistoryRecorder | None = None
        self._stopping = False
        self.port = 0

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        limits = ConnectionLimits.for_failover(self._target)  # a vanished primary is noticed
        self._engine = make_engine(self._target, limits=limits, pool_size=10, max_overflow=40)
        # restart-only tokens (listen address, TLS, pools) from the rows as they are now
        self._config = config_with_db(self._config, self._engine)
        try:
            self._gate = ConnectGate(ConnectLimits.from_config(self._config))
        except ValueError as exc:  # the file's caps (checked when made) stay
            log.error("L7R connect limits of the database's rows refused: %s", exc)
        cert_files: tuple[Path, Path] | None = None
        if self._ssl is None and self._config.get_bool("l7r.use_ssl"):
            cert_files = ensure_certificate(
                self._config, self._engine, host_address=self.host_address
            )
            self._ssl = server_context(*cert_files)
        self._notifier = Notifier(self._target, self.host_id, self._sessions.abort)
        self._notifier.start()
        self.history = HistoryRecorder(
            self._engine, self.host_id, failover_wait=failover_wait(self._config)
        )
        self.history.start()
        live = LiveConfig(self._config, self._engine)
        live.subscribe(self._gate.follow)  # per-user/per-address caps: live
        self._node = Node(
            live, self._engine, self.host_id, on_auth_failure=self.metrics.auth_failed
        )
        self._flow = ConnectFlow(
            self._engine,
            live,
            host_id=self.host_id,
            host_address=self.host_address,
            notifier=self._notifier,
            holds_session=self._sessions.holds,
        )
        self._logins = FairPool(LOGIN_WORKERS, "l7r-login")
        self._quick = ThreadPoolExecutor(QUICK_WORKERS, thread_name_prefix="l7r-quick")
        self._connects = ThreadPoolExecutor(
            self._gate.limits.workers, thread_name_prefix="l7r-connect"
        )
        self._thread = threading.Thread(target=self._run, name="l7r", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._failure is not None:
            self.stop()
            raise RuntimeError(f"the L7R could not listen: {self._failure}") from self._failure
        self.core = L7rCore(
            config=self._config, live=live, engine=self._engine, node=self._node,
            flow=self._flow, sessions=self._sessions, notifier=self._notifier,
            gate=self._gate, logins=self._logins, quick=self._quick,
            connects=self._connects, host_id=self.host_id, host_address=self.host_address,
            ssl_context=self._ssl, cert_files=cert_files, history=self.history,
        )  # fmt: skip
        try:
            for factory in self._attach:
                service = factory(self.core)
                service.start()
                self.attached.append(service)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        while self.attached:
            service = self.attached.pop()
            try:
                service.stop()
            except Exception:
                log.exception("L7R: stopping an attached service failed")
        loop = self._loop
        self._stopping = True
        if loop is not None and self._thread is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(15)
        if self._notifier is not None:
            self._notifier.stop()
        if self.history is not None:
            self.history.stop()
        if self._logins is not None:
            self._logins.shutdown()
        for pool in (self._quick, self._connects):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        if self._engine is not None:
            self._engine.dispose()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._sessions.abort_all()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        assert self._loop is not None
        self._loop.call_later(0.2, self._loop.stop)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _listen(self) -> None:
        address = self._config.get("l7r.address").strip()
        host = None if address in ("*", "") else address
        self._server = await asyncio.start_server(
            self._handle,
            host,
            self._config.get_int("l7r.port"),
            ssl=self._ssl,
            limit=CHUNK,
            reuse_address=True,
            backlog=LISTEN_BACKLOG,
            # asyncio refuses a handshake timeout without TLS (l7r.use_ssl = 0)
            ssl_handshake_timeout=(
                float(self._config.get_int("internal.l7r.timeout.handshake")) if self._ssl else None
            ),
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    # ---- threads -------------------------------------------------------------------------
    async def _quickly(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the quick pool (short database work only)."""
        return await asyncio.get_running_loop().run_in_executor(self._quick, fn, *args)

    def _long(self, ticket: Ticket, work: Callable[[], T]) -> Future[T]:
        """``work()`` in the connect pool; ``ticket`` is given back when it ends (not
        when the client leaves: the thread may still be winding down then)."""
        assert self._connects is not None
        ticket.handed_over = True
        future = self._connects.submit(work)
        future.add_done_callback(lambda _: ticket.release())
        return future

    # ---- one connection ----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "unknown"
        conn = ServerConnection()
        cached: dict[str, Principal] = {}
        timeout = float(self._config.get_int("internal.l7r.timeout.request"))
        try:
            while True:
                deadline = time.monotonic() + timeout
                try:
                    request = await self._next_request(conn, reader, deadline)
                except ProtocolError as exc:
                    writer.write(conn.fail(exc))
                    await writer.drain()
                    return
                if request is None:
                    return
                switched = await self._serve(request, conn, cached, address, reader, writer)
                if switched or not conn.keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _next_request(
        self, conn: ServerConnection, reader: asyncio.StreamReader, deadline: float
    ) -> Request | None:
        while True:
            event = conn.next_event()
            if isinstance(event, Request):
                return event
            if event is not NEED_DATA:  # CLOSED (PAUSED cannot come between requests)
                return None
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                data = await asyncio.wait_for(reader.read(CHUNK), left)
            except TimeoutError:
                if conn.has_partial_head:
                    raise RequestTimeout("the request head did not arrive in time") from None
                return None
            conn.receive_data(data)

    async def _serve(
        self,
        request: Request,
        conn: ServerConnection,
        cached: dict[str, Principal],
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; True when the connection was switched to a relay."""
        path = request.path
        ticket: Ticket | None = None
        failure: L7rError | None = None
        try:
            if request.method != "GET":
                raise MethodNotAllowed(f"method {request.method} is not served (GET only)")
            if path == "/qvd/ping":
                reply = await self._quickly(self._node.ping)
            elif path not in _AUTH_PATHS:
                raise NotFound(f"no such resource: {path}")
            else:
                if path in _LONG:
                    ticket = self._gate.admit(address)
                principal = await self._principal(request, cached, address)
                if path not in ("/qvd/authenticate_user", "/qvd/create_auth_token"):
                    await self._quickly(lambda: self._node.check_node(need_running=path in _LISTS))
                if ticket is not None:
                    ticket.bind_user(principal.user_id, principal.login)
                if path == "/qvd/connect_to_vm":
                    assert ticket is not None
                    return await self._connect(
                        request, principal, conn, address, reader, writer, ticket
                    )
                reply = await self._answer(request, principal, conn, writer, ticket)
        except L7rError as exc:
            reply = _error_reply(exc)
            failure = exc
        except Exception as exc:
            outage = database_outage(exc)
            if outage is not None:
                log.warning("L7R request %s: database unavailable: %s", path, exc)
                failure = outage
            else:  # the message (SQL, paths, addresses) is for the log, not the client
                log.exception("L7R request %s failed", path)
                failure = Internal(f"internal error: {type(exc).__name__}")
            reply = _error_reply(failure)
        finally:
            if ticket is not None and not ticket.handed_over:  # refused before its work
                ticket.release()  # went to a thread (else the thread's end gives it back)
        if path == "/qvd/connect_to_vm":
            self.metrics.connected(failure)
        writer.write(conn.respond(reply.status, reply.body, reply.content_type, reply.headers))
        await writer.drain()
        return False

    async def _principal(
        self, request: Request, cached: dict[str, Principal], address: str
    ) -> Principal:
        key = request.headers.get("authorization", "")
        found = cached.get(key)
        if found is not None:  # keep-alive: the user as it is now, not as it logged in
            await self._quickly(self._node.recheck, found)
        else:
            assert self._logins is not None
            turn = _login_turn(request.headers, address)
            login = asyncio.wrap_future(
                self._logins.submit(turn, self._node.login, request.headers, address)
            )
            assert self.history is not None
            info = client_info(request.headers.get("user-agent"), _client_query(request))
            found = await record_login(
                self.history, self._node.config, login, request.headers, address, info, "nx"
            )
            if key:
                cached.clear()
                cached[key] = found
        return found

    async def _answer(
        self,
        request: Request,
        principal: Principal,
        conn: ServerConnection,
        writer: asyncio.StreamWriter,
        ticket: Ticket | None,
    ) -> Reply:
        """The reply of an authenticated request other than ``connect_to_vm``."""
        path = request.path
        if path in _LISTS:
            applications = path == "/qvd/list_of_applications"
            return await self._quickly(
                lambda: self._node.list_of_vm(principal, applications=applications)
            )
        if path == "/qvd/authenticate_user":
            store_auth = request.param("store_auth") == "1"
            return await self._quickly(self._node.authenticate_user, principal, store_auth)
        if path == "/qvd/create_auth_token":
            return await self._quickly(self._node.create_auth_token, principal)
        assert ticket is not None  # /qvd/stop_vm
        vm_id = vm_id_of(request.query)
        return await self._with_progress(
            conn, writer, ticket, lambda progress: self._stop(principal, vm_id, progress)
        )

    def _stop(self, principal: Principal, vm_id: int, progress: Callable[[str], None]) -> Reply:
        return Reply(body=self._flow.stop_vm(principal, vm_id, progress).encode())

    async def _with_progress(
        self,
        conn: ServerConnection,
        writer: asyncio.StreamWriter,
        ticket: Ticket,
        work: Callable[[Callable[[str], None]], T],
    ) -> T:
        """Run ``work(progress)`` in the connect pool, writing each progress text as a
        102; ``ticket`` is given back when the work ends."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()

        def progress(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        task = asyncio.wrap_future(self._long(ticket, lambda: work(progress)))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                either: set[asyncio.Future[Any]] = {task, getter}
                try:
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not getter.done():
                        getter.cancel()
                if getter.done() and not getter.cancelled():
                    writer.write(conn.inform(getter.result()))
                    await writer.drain()
                    continue
                while not queue.empty():
                    writer.write(conn.inform(queue.get_nowait()))
                return await task
        finally:
            # left early (the client went away while a 102 was written): the work still
            # ends in its thread, and its outcome is read so it is never reported as lost
            if not task.done():
                task.add_done_callback(_outcome_read)

    async def _connect(
        self,
        request: Request,
        principal: Principal,
        conn: ServerConnection,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ticket: Ticket,
    ) -> bool:
        if not request.wants_upgrade:
            raise UpgradeRequired(
                "connect_to_vm needs the headers 'Connection: Upgrade' and 'Upgrade: QVD/1.0'"
            )
        vm_id = vm_id_of(request.query)
        params = client_params(request.query)
        info = client_info(request.headers.get("user-agent"), params)
        started: list[HistoryEntry] = []  # the history row, once the relay was handed over
        try:
            return await self._connect_vm(
                principal, vm_id, params, info, conn, address, reader, writer, ticket, started
            )
        except Exception as exc:
            assert self.history is not None
            if started:  # the row of the relay ends with its reason (``_switch``)
                raise
            self.history.connect_failed(
                tenant_id=principal.tenant_id, user_id=principal.user_id, login=principal.login,
                vm_id=vm_id, address=address, info=info, transport="nx", error=exc,
                detail=exc.message if isinstance(exc, L7rError) else None,
            )  # fmt: skip
            raise

    async def _connect_vm(
        self,
        principal: Principal,
        vm_id: int,
        params: dict[str, str],
        info: str | None,
        conn: ServerConnection,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ticket: Ticket,
        started: list[HistoryEntry],
    ) -> bool:
        await self._quickly(self._flow.check_vm, principal, vm_id)
        loop = asyncio.get_running_loop()
        session = asyncio.current_task()
        cancelled = threading.Event()
        relaying = threading.Event()

        def abort() -> None:
            cancelled.set()
            if relaying.is_set() and session is not None:
                loop.call_soon_threadsafe(session.cancel)

        try:
            watcher = asyncio.ensure_future(_watch_departure(reader, conn, cancelled))
            try:
                target: Target = await self._with_progress(
                    conn,
                    writer,
                    ticket,
                    lambda progress: self._flow.connect(
                        principal, vm_id, params, user_ip=address, progress=progress,
                        cancelled=cancelled, on_acquired=lambda: self._sessions.add(vm_id, abort),
                    ),
                )  # fmt: skip
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            assert self.history is not None
            entry = self.history.connect_started(
                tenant_id=principal.tenant_id, user_id=principal.user_id, login=principal.login,
                vm_id=vm_id, address=address, info=info, transport="nx",
                takeover=target.took_over,
            )  # fmt: skip
            started.append(entry)
            return await self._switch(target, conn, reader, writer, relaying, entry, cancelled)
        finally:
            cancelled.set()
            self._sessions.remove(vm_id, abort)

    async def _switch(
        self,
        target: Target,
        conn: ServerConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        relaying: threading.Event,
        entry: HistoryEntry,
        cancelled: threading.Event,
    ) -> bool:
        vm_id = target.vm_id
        agent: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        failed = False
        try:
            await self._quickly(check_route, target.address)
            await self._quickly(self._flow.finish, vm_id)
            writer.write(conn.inform("Connection established"))
            writer.write(conn.switch(target.slave_key))
            await writer.drain()
            self.metrics.connected()
            relaying.set()
            # nxagent ends its session when a connection closes before the NX greeting,
            # so the agent is dialled only once the client has spoken
            first = await first_bytes(reader, conn.trailing_data, GREETING_TIMEOUT)
            if not first:
                log.info("VM %s: the client left before its NX greeting", vm_id)
                return True
            try:
                agent = await open_agent(
                    target.address,
                    target.port,
                    float(self._config.get_int("internal.l7r.timeout.vma")),
                )
            except Unavailable as exc:
                log.warning("VM %s: %s", vm_id, exc.message)
                return True
            traffic = entry.traffic

            def count_in(n: int) -> None:
                self.metrics.relayed_in.inc(n)
                traffic.up += n

            def count_out(n: int) -> None:
                self.metrics.relayed_out.inc(n)
                traffic.down += n

            await relay(
                (reader, writer), agent, cookie=target.cookie, trailing=first,
                count_in=count_in, count_out=count_out,
            )  # fmt: skip
            return True
        except L7rError as exc:
            failed = True
            self.metrics.connected(exc)
            writer.write(conn.respond(exc.status, (exc.message + "\n").encode()))
            await writer.drain()
            return False
        except Exception:
            failed = True
            raise
        finally:
            if agent is not None:
                agent[1].close()
            end = RelayEnd(aborted=cancelled.is_set(), shutting_down=self._stopping, failed=failed)
            await asyncio.shield(self._release_recorded(vm_id, entry, end))

    async def _release_recorded(self, vm_id: int, entry: HistoryEntry, end: RelayEnd) -> None:
        """Release the session; the history row ends with the reason its row tells."""
        assert self.history is not None
        try:
            seen = await self._quickly(self._flow.release_seen, vm_id)
        except Exception:
            self.history.connect_ended(
                entry, end_reason(end, None, self.host_id), entry.traffic.up, entry.traffic.down
            )
            raise
        self.history.connect_ended(
            entry, end_reason(end, seen, self.host_id), entry.traffic.up, entry.traffic.down
        )


def _outcome_read(future: asyncio.Future[Any]) -> None:
    """Read a finished future's outcome nobody awaits any more (its exception, if any,
    was already answered or is moot: the client left)."""
    if not future.cancelled():
        future.exception()


async def _watch_departure(
    reader: asyncio.StreamReader, conn: ServerConnection, cancelled: threading.Event
) -> None:
    """While a connect's flow runs: a client that closes cancels it (its thread and
    its place under the caps are free within a poll, not at the VM start timeout);
    bytes it sends early (NX data) are kept for after the 101, up to ``EARLY_BYTES``."""
    try:
        while conn.pending_bytes < EARLY_BYTES:
            data = await reader.read(CHUNK)
            if not data:
                break
            conn.receive_data(data)
        else:
            return  # enough kept: the rest waits in the socket
    except (ConnectionError, ssl.SSLError):
        pass
    cancelled.set()


def _client_query(request: Request) -> dict[str, str]:
    """The ``qvd.client.*`` parameters of a request (for the history's client info)."""
    return {k: v for k, v in request.query if k.startswith("qvd.client.")}


def _login_turn(headers: Mapping[str, str], address: str) -> Hashable:
    """The fair-queue key of a login: the address and the login it claims (unchecked,
    used only to take turns; a password or token never becomes part of it)."""
    return (address, basic_login(headers.get("authorization", "")))


def _error_reply(exc: L7rError) -> Reply:
    return Reply(
        status=exc.status,
        body=(exc.message + "\n").encode("utf-8"),
        headers=unauthorized_headers(exc),
    )
