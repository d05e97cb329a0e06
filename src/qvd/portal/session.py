"""``WS /ws/desktops/{id}``: a browser session of the user's desktop.

    Origin check → cookie session → gate (caps) → VM check → the shared connect flow
    (transport "vnc": takeover, start, x_start, x_wait), its progress as JSON text
    frames → the VMA's VNC stream (one-time password) → ``{"ready": true}`` → binary
    RFB frames both ways (``qvd.l7r.vnc.bridge``) until either side ends.

The session is in the node's one registry (``core.sessions``): a takeover by an NX
client or another browser aborts it and the socket closes with 4409. Failures send
``{"error": reason}`` and close with 4403 / 4404 / 4409 / 4503 (4500: a bug).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from qvd.config import Config
from qvd.l7r.auth import Principal
from qvd.l7r.core import L7rCore
from qvd.l7r.errors import (
    Forbidden,
    L7rError,
    NotFound,
    Unauthorized,
    Unavailable,
    database_outage,
)
from qvd.l7r.flow import Aborted, Target
from qvd.l7r.history import HistoryEntry, RelayEnd, Traffic, client_info, end_reason
from qvd.l7r.store import Runtime
from qvd.l7r.vnc import VncStream
from qvd.l7r.vnc import bridge as vnc_bridge
from qvd.portal import flowport
from qvd.portal.auth import Authority, address_of
from qvd.portal.web import same_origin

__all__ = ["WebSocketChannel", "close_code", "fail_socket", "origin_ok", "reason_of", "routes"]

log = logging.getLogger(__name__)
GEOMETRY = re.compile(r"[1-9][0-9]{1,4}x[1-9][0-9]{1,4}")
KEYBOARD = re.compile(r"[a-z][a-z0-9_]{0,15}(\([a-z0-9_]{1,24}\))?")
CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_TAKEN_OVER = 4403, 4404, 4409
CLOSE_UNAVAILABLE, CLOSE_INTERNAL = 4503, 4500
RECHECK_SECONDS = 30.0  # how often a live browser session checks its user again


def close_code(exc: BaseException) -> int:
    if isinstance(exc, Aborted):
        return CLOSE_TAKEN_OVER
    if isinstance(exc, NotFound):
        return CLOSE_NOT_FOUND
    if isinstance(exc, Forbidden | Unauthorized):
        return CLOSE_FORBIDDEN
    if isinstance(exc, L7rError) or database_outage(exc) is not None:
        return CLOSE_UNAVAILABLE
    return CLOSE_INTERNAL


def origin_ok(ws: WebSocket) -> bool:
    """A cookie-authenticated socket must come from a page of this origin (no
    cross-site WebSocket hijacking): ``Origin`` is ``https://`` + the ``Host`` asked."""
    return "origin" in ws.headers and same_origin(ws.headers)


def reason_of(exc: Exception, vm_id: int | None = None) -> str:
    """The text of the error frame: an L7R refusal's or outage's reason; a bug's type
    only (its details go to the log)."""
    if isinstance(exc, L7rError):
        return exc.message
    outage = database_outage(exc)
    if outage is not None:
        return outage.message
    log.error("portal: browser session of VM %s failed", vm_id, exc_info=exc)
    return f"internal error: {type(exc).__name__}"


def client_params(ws: WebSocket) -> dict[str, str]:
    """``geometry=WxH`` and ``keyboard=pc105/<layout>`` from the query, when well formed."""
    params: dict[str, str] = {}
    geometry = ws.query_params.get("geometry", "")
    if GEOMETRY.fullmatch(geometry):
        params["geometry"] = geometry
    keyboard = ws.query_params.get("keyboard", "")
    if KEYBOARD.fullmatch(keyboard):
        params["keyboard"] = f"pc105/{keyboard}"
    return params


def attach_timeout(config: Config) -> float:
    """How long a browser's ``vnc_connect`` may take: the VMA may first resume the
    session into its in-VM viewer (an X start, bounded in the VM by
    ``vma.vnc.attach.timeout``, 20 s), on top of one VMA call (a VMA call's few
    seconds cut off resumes of a busy VM with a 4503)."""
    vma = config.get_int("internal.l7r.timeout.vma")
    return float(vma + 2 * config.get_int("internal.l7r.timeout.x_start"))


class WebSocketChannel:
    """A Starlette WebSocket as the bridge's ``ByteChannel`` (binary frames only)."""

    def __init__(self, ws: WebSocket, traffic: Traffic | None = None) -> None:
        self._ws = ws
        self._traffic = traffic if traffic is not None else Traffic()

    async def receive(self) -> bytes | None:
        while True:
            try:
                message = await self._ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return None
            if message["type"] == "websocket.disconnect":
                return None
            data = message.get("bytes")
            if data is not None:
                self._traffic.up += len(data)
                return bytes(data)

    async def send(self, data: bytes) -> None:
        """Raises ``ConnectionError`` once the browser has gone (the relay's normal end)."""
        try:
            await self._ws.send_bytes(data)
            self._traffic.down += len(data)
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise ConnectionError(f"the browser's socket is closed: {exc}") from None


async def fail_socket(ws: WebSocket, code: int, reason: str) -> None:
    """Tell the browser why (``{"error": reason}``) and close with ``code``; a socket
    already gone is left alone."""
    with contextlib.suppress(Exception):
        if ws.client_state is WebSocketState.CONNECTING:
            await ws.accept()
        await ws.send_json({"error": reason})
        await ws.close(code)


async def _watch_departure(ws: WebSocket, gone: threading.Event) -> None:
    """Until the flow is done: a client that leaves cancels it (frames are dropped:
    the browser sends nothing before ``ready``)."""
    with contextlib.suppress(Exception):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
    gone.set()


def routes(core: L7rCore, authority: Authority) -> list[BaseRoute]:
    async def desktop_socket(ws: WebSocket) -> None:
        if not origin_ok(ws):
            await fail_socket(
                ws, CLOSE_FORBIDDEN, "refused: this socket must come from the portal's page"
            )
            return
        try:
            who = await authority.session(ws)
        except Exception as exc:  # the database is down, most likely
            await fail_socket(ws, close_code(exc), reason_of(exc))
            return
        if who is None:
            await fail_socket(ws, CLOSE_FORBIDDEN, "not logged in (or the session ended)")
            return
        raw = str(ws.path_params.get("vm_id", ""))
        if not raw.isdigit() or len(raw) > 12:
            await fail_socket(ws, CLOSE_NOT_FOUND, f"no desktop {raw[:20]!r}")
            return
        await ws.accept()
        await BrowserSession(core, ws, who.principal, int(raw)).run()

    return [WebSocketRoute("/ws/desktops/{vm_id}", desktop_socket)]


class BrowserSession:
    """One browser session, from the connect flow to the end of the relay."""

    def __init__(self, core: L7rCore, ws: WebSocket, principal: Principal, vm_id: int) -> None:
        self.core = core
        self.ws = ws
        self.principal = principal
        self.vm_id = vm_id
        self.cancelled = threading.Event()  # the flow stops: the client left or lost it
        self.taken_over = threading.Event()  # another client took the session
        self.loop = asyncio.get_running_loop()
        self.aborted = asyncio.Event()
        self.acquired = False
        self.handed_over = False  # the flow gave its session over (a failed flow released it)
        self.abort: Callable[[], None] = self._abort  # one object: the registry's key
        self.entry: HistoryEntry | None = None  # the history row of this relay
        self.failure: Exception | None = None  # what ended the relay, if not its end
        self.info = client_info(ws.headers.get("user-agent"), {})

    def _abort(self) -> None:
        """A takeover (from any thread): stop the flow, or end the relay with 4409."""
        self.taken_over.set()
        self.cancelled.set()
        with contextlib.suppress(RuntimeError):  # the portal's loop has ended already
            self.loop.call_soon_threadsafe(self.aborted.set)

    def on_acquired(self) -> None:
        self.acquired = True
        self.core.sessions.add(self.vm_id, self.abort)

    async def run(self) -> None:
        ticket = None
        stream: VncStream | None = None
        try:
            ticket = self.core.gate.admit(address_of(self.ws))
            ticket.bind_user(self.principal.user_id, self.principal.login)
            await self.core.quickly(self.core.flow.check_vm, self.principal, self.vm_id)
            target = await self._connect(ticket)
            self.handed_over = True  # from here on, the session is this one's to release
            ticket = None  # given back by the flow's thread
            if self.cancelled.is_set():  # taken over (see below) or the browser left
                raise Unavailable("the browser left before its session was ready")
            stream = await flowport.open_vnc(target, timeout=attach_timeout(self.core.config))
            await self.core.quickly(self.core.flow.finish, self.vm_id)
            await self.ws.send_json({"ready": True})
            self.entry = self._started(target)
            await self._relay(stream)
        except Exception as exc:
            if self.taken_over.is_set() and not isinstance(exc, Aborted):
                exc = Aborted(f"the session of VM {self.vm_id} was taken over by another client")
            self._failed(exc)
            await fail_socket(self.ws, close_code(exc), reason_of(exc, self.vm_id))
        finally:
            if ticket is not None and not ticket.handed_over:
                ticket.release()
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.close()
            self.cancelled.set()
            # the row first, the registry after: a client taking over waits for this
            # release, and would take a row the registry no longer holds as a crash's
            # leftover (and then lose it to this late release)
            # a flow that failed has released the session itself: releasing it again (by
            # host) could free the session another client of this node has just taken
            if self.acquired and self.handed_over:
                seen: Runtime | None = None
                try:
                    seen = await asyncio.shield(
                        self.core.quickly(self.core.flow.release_seen, self.vm_id)
                    )
                except Exception as exc:  # the database is gone (the error frame said so):
                    # the next connect on this node frees the row as a session left by a crash
                    log.info("VM %s: the session could not be released: %s", self.vm_id, exc)
                self._ended(seen)
            self.core.sessions.remove(self.vm_id, self.abort)

    # ---- the session history ------------------------------------------------------------
    def _started(self, target: Target) -> HistoryEntry:
        p = self.principal
        return self.core.history.connect_started(
            tenant_id=p.tenant_id, user_id=p.user_id, login=p.login, vm_id=self.vm_id,
            address=address_of(self.ws), info=self.info, transport="vnc",
            takeover=target.took_over,
        )  # fmt: skip

    def _failed(self, exc: Exception) -> None:
        """A connect that never relayed is a failed row; a relay's error ends its row."""
        if self.entry is not None:
            self.failure = exc
            return
        p = self.principal
        self.core.history.connect_failed(
            tenant_id=p.tenant_id, user_id=p.user_id, login=p.login, vm_id=self.vm_id,
            address=address_of(self.ws), info=self.info, transport="vnc", error=exc,
            detail=reason_of(exc, self.vm_id),
        )  # fmt: skip

    def _ended(self, seen: Runtime | None) -> None:
        entry = self.entry
        if entry is None:
            return
        failed = self.failure is not None and not isinstance(
            self.failure, Aborted | Unauthorized | ConnectionError
        )
        end = RelayEnd(aborted=self.taken_over.is_set(), failed=failed)
        reason = end_reason(end, seen, self.core.host_id)
        self.core.history.connect_ended(entry, reason, entry.traffic.up, entry.traffic.down)

    async def _connect(self, ticket: Any) -> Target:
        queue: asyncio.Queue[str] = asyncio.Queue()

        def progress(text: str) -> None:
            self.loop.call_soon_threadsafe(queue.put_nowait, text)

        def work() -> Target:
            return flowport.connect(
                self.core, self.principal, self.vm_id, client_params(self.ws),
                user_ip=address_of(self.ws), progress=progress, cancelled=self.cancelled,
                on_acquired=self.on_acquired,
            )  # fmt: skip

        ticket.handed_over = True
        future = self.core.connects.submit(work)
        future.add_done_callback(lambda _: ticket.release())
        task = asyncio.wrap_future(future)
        watcher = asyncio.ensure_future(_watch_departure(self.ws, self.cancelled))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                either: set[asyncio.Future[Any]] = {task, getter}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                elif not getter.cancelled():
                    await self.ws.send_json({"progress": getter.result()})
                    continue
                while not queue.empty():
                    await self.ws.send_json({"progress": queue.get_nowait()})
                return await task
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if not task.done():
                task.add_done_callback(_outcome_read)

    async def _relay(self, stream: VncStream) -> None:
        traffic = self.entry.traffic if self.entry is not None else None
        bridge = asyncio.ensure_future(vnc_bridge(WebSocketChannel(self.ws, traffic), stream))
        taken = asyncio.ensure_future(self.aborted.wait())
        still_allowed = asyncio.ensure_future(self._recheck())
        tasks = (bridge, taken, still_allowed)
        try:
            await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        if self.aborted.is_set():
            raise Aborted(f"the session of VM {self.vm_id} was taken over by another client")
        if still_allowed.done() and not still_allowed.cancelled():
            ended = still_allowed.exception()
            if ended is not None:
                raise ended
        failure = bridge.exception() if bridge.done() and not bridge.cancelled() else None
        if failure is not None:
            raise failure
        with contextlib.suppress(Exception):
            await self.ws.close(1000)

    async def _recheck(self) -> None:
        """Every ``RECHECK_SECONDS`` of a relay: the user as it is now (blocked, deleted,
        a new password, the portal session expired: ``Unauthorized``, which
        ends the relay with 4403). A database that cannot answer does not end it."""
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            try:
                await self.core.quickly(self.core.node.recheck, self.principal)
            except Unauthorized:
                raise
            except Exception as exc:
                if database_outage(exc) is None:
                    raise


def _outcome_read(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
