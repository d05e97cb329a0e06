"""Admin shadowing ("spy") in the portal: ``routes(core)``, mounted by the portal app.

    POST /spy    form ``ticket`` (posted by the WAT's launcher, cross-origin, no
                 cookie): the ticket is looked at, not used; valid → the spy page
                 (``spy.html``: ``#screen`` holds the ticket for its socket), else 403
                 with the reason (unknown, expired, used).
    WS /ws/spy   same origin as the spy page; the first text frame is the ticket,
                 used up at once (one ``UPDATE … RETURNING``: of two uses one wins);
                 then the VM's VMA endpoint (``core.flow.spy_endpoint``: the VM must
                 run), ``open_vnc(view_only=not interactive, attach=False, notice)``,
                 ``{"ready": true}`` and the RFB bridge, as the session socket does.

The ticket names its VM: nothing the browser sends chooses another. The user sees
"<admin> is viewing your desktop" unless the VM's tenant turned ``vm.spy.notice`` off.
When the socket ends, an audit row ``vm_spy_end`` records who watched which VM, how
long and whether with control (source ``PORTAL``, the administrator's address).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from qvd.db.models import User, Vm
from qvd.db.spytickets import SpyGrant, TicketState, consume, inspect, record_spy_end
from qvd.l7r import vnc
from qvd.l7r.core import L7rCore
from qvd.l7r.errors import Unavailable
from qvd.l7r.flow import VmaEndpoint
from qvd.portal.auth import address_of
from qvd.portal.session import (
    CLOSE_FORBIDDEN,
    WebSocketChannel,
    close_code,
    fail_socket,
    origin_ok,
    reason_of,
)
from qvd.portal.web import FormTooLarge, read_form, render

__all__ = [
    "FIRST_FRAME_SECONDS",
    "SPY_REFUSED",
    "SpySession",
    "notice_text",
    "routes",
    "spy_notice",
]

log = logging.getLogger(__name__)

FIRST_FRAME_SECONDS = 10.0  # the page sends its ticket at once
MAX_TICKET_FRAME = 256
SPY_REFUSED = 5150  # QVD's status of a spy that could not be opened (the API's CANNOT_SPY)


def notice_text(admin_name: str, interactive: bool) -> str:
    """What the user is shown while an administrator watches (printable, bounded)."""
    name = "".join(c for c in admin_name if c.isprintable())[:64] or "An administrator"
    verb = "is viewing and may control" if interactive else "is viewing"
    return f"{name} {verb} your desktop"


def spy_notice(core: L7rCore, grant: SpyGrant) -> str:
    """The notice the VM's user sees, or "" when the VM's tenant turned it off."""
    with core.engine.connect() as conn:
        tenant_id = conn.scalar(
            select(User.tenant_id).join(Vm, Vm.user_id == User.id).where(Vm.id == grant.vm_id)
        )
    if tenant_id is None:
        raise Unavailable(f"VM {grant.vm_id} does not exist any more")
    if not core.live.get().get_bool("vm.spy.notice", tenant_id):
        return ""
    return notice_text(grant.administrator_name, grant.interactive)


def routes(core: L7rCore) -> list[BaseRoute]:
    quickly = core.quickly

    def look(ticket: str) -> tuple[TicketState, SpyGrant | None, str]:
        with core.engine.connect() as conn:
            state, grant = inspect(conn, ticket)
            name = ""
            if grant is not None:
                name = conn.scalar(select(Vm.name).where(Vm.id == grant.vm_id)) or ""
        return state, grant, name

    async def spy_page(request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormTooLarge:
            return PlainTextResponse("the spy form is too large\n", status_code=413)
        ticket = form.get("ticket", "")
        state, grant, vm_name = await quickly(look, ticket)
        if grant is None:
            return render("error.html", 403, message=state.reason)
        return render(
            "spy.html",
            ticket=ticket,
            vm_id=grant.vm_id,
            vm_name=vm_name,
            view_only=not grant.interactive,
        )

    async def spy_socket(ws: WebSocket) -> None:
        if not origin_ok(ws):
            await fail_socket(
                ws, CLOSE_FORBIDDEN, "refused: this socket must come from the spy page"
            )
            return
        await ws.accept()
        ticket = await _first_text(ws)
        if ticket is None:
            await fail_socket(ws, CLOSE_FORBIDDEN, "no spy ticket was sent")
            return
        state, grant = await quickly(_use, core, ticket)
        if grant is None:
            await fail_socket(ws, CLOSE_FORBIDDEN, state.reason)
            return
        await SpySession(core, ws, grant, address_of(ws)).run()

    return [
        Route("/spy", spy_page, methods=["POST"]),
        WebSocketRoute("/ws/spy", spy_socket),
    ]


def _use(core: L7rCore, ticket: str) -> tuple[TicketState, SpyGrant | None]:
    with core.engine.begin() as conn:
        return consume(conn, ticket)


async def _first_text(ws: WebSocket) -> str | None:
    """The first frame, when it is a short text (the ticket); None otherwise."""
    try:
        message = await asyncio.wait_for(ws.receive(), FIRST_FRAME_SECONDS)
    except (TimeoutError, WebSocketDisconnect, RuntimeError):
        return None
    text = message.get("text")
    if message["type"] != "websocket.receive" or not isinstance(text, str):
        return None
    return text.strip() if len(text) <= MAX_TICKET_FRAME else None


class SpySession:
    """One spy, from its used ticket to the audit row at its end."""

    def __init__(self, core: L7rCore, ws: WebSocket, grant: SpyGrant, address: str) -> None:
        self.core = core
        self.ws = ws
        self.grant = grant
        self.address = address

    def _endpoint(self) -> VmaEndpoint:
        return self.core.flow.spy_endpoint(self.grant.vm_id)

    async def run(self) -> None:
        started = time.monotonic()
        shown = False
        failure = ""
        stream: vnc.VncStream | None = None
        gate = None
        try:
            gate = self.core.gate.admit(self.address)
            await self.ws.send_text(json.dumps({"progress": "Locating the desktop"}))
            endpoint = await self.core.quickly(self._endpoint)
            notice = await self.core.quickly(spy_notice, self.core, self.grant)
            await self.ws.send_text(json.dumps({"progress": "Opening the view"}))
            timeout = float(self.core.config.get_int("internal.l7r.timeout.vma"))
            stream = await vnc.open_vnc(
                endpoint,
                view_only=not self.grant.interactive,
                attach=False,
                notice=notice,
                timeout=timeout,
            )
            gate.release()
            gate = None
            await self.ws.send_text(json.dumps({"ready": True}))
            shown = True
            started = time.monotonic()
            await vnc.bridge(WebSocketChannel(self.ws), stream)
            stream = None  # the bridge closes it
            with contextlib.suppress(Exception):
                await self.ws.close(1000)
        except Exception as exc:
            failure = reason_of(exc, self.grant.vm_id)
            if not shown:
                await fail_socket(self.ws, close_code(exc), failure)
            else:
                with contextlib.suppress(Exception):
                    await self.ws.close(1000)
        finally:
            if gate is not None:
                gate.release()
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.close()
            seconds = round(time.monotonic() - started) if shown else 0
            try:
                await asyncio.shield(self.core.quickly(self._record, seconds, shown, failure))
            except Exception as exc:  # an audit row lost is told, never silently
                log.warning(
                    "portal: the vm_spy_end audit row of VM %s (administrator %s) could "
                    "not be written: %s", self.grant.vm_id, self.grant.administrator_name, exc,
                )  # fmt: skip

    def _record(self, seconds: int, shown: bool, failure: str) -> None:
        with self.core.engine.begin() as conn:
            record_spy_end(
                conn,
                self.grant,
                seconds=seconds,
                address=self.address,
                status=0 if shown else SPY_REFUSED,
                reason="" if shown else failure,
            )
