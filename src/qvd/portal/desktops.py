"""The desktops page, its JSON (``GET /api/desktops``) and the start/stop/restart
buttons (``POST /api/desktops/{id}/{op}``, CSRF-checked), and the session page."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from qvd.l7r.auth import Principal
from qvd.l7r.core import L7rCore
from qvd.l7r.errors import L7rError, NotFound, database_outage
from qvd.portal import flowport
from qvd.portal.auth import CSRF_HEADER, Authority, LoggedIn
from qvd.portal.web import KEYBOARD_LAYOUTS, render

__all__ = ["OPS", "desktops_of", "routes"]

log = logging.getLogger(__name__)
OPS = ("start", "stop", "restart")


def desktops_of(core: L7rCore, user_id: int) -> list[dict[str, Any]]:
    """The user's desktops (not applications) with their VM and session states."""
    with core.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT v.id, v.name, r.vm_state, r.user_state, r.blocked "
                "  FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id "
                "  JOIN osfs o ON o.id = v.osf_id "
                " WHERE v.user_id = :u AND NOT o.is_application ORDER BY v.name, v.id"
            ),
            {"u": user_id},
        )
        return [
            {
                "id": int(r[0]),
                "name": str(r[1]),
                "state": str(r[2]),
                "user_state": str(r[3]),
                "blocked": bool(r[4]),
            }
            for r in rows
        ]


def error_json(exc: BaseException) -> JSONResponse:
    """An ``L7rError``'s status and reason; a database outage as 503; else 500 (the
    detail goes to the log, not the page)."""
    if isinstance(exc, L7rError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    outage = database_outage(exc)
    if outage is not None:
        return JSONResponse({"error": outage.message}, status_code=outage.status)
    log.error("portal request failed", exc_info=exc)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


def vm_id_param(request: Request) -> int:
    raw = str(request.path_params.get("vm_id", ""))
    if not raw.isdigit() or len(raw) > 12:
        raise NotFound(f"no desktop {raw[:20]!r}")
    return int(raw)


def routes(core: L7rCore, authority: Authority) -> list[BaseRoute]:
    quickly = core.quickly

    async def list_json(request: Request) -> Response:
        who = await authority.session(request)
        if who is None:
            return JSONResponse({"error": "not logged in (or the session ended)"}, 401)
        try:
            rows = await quickly(desktops_of, core, who.principal.user_id)
        except Exception as exc:
            return error_json(exc)
        return JSONResponse(rows)

    async def operate(request: Request) -> Response:
        who = await authority.session(request)
        if who is None:
            return JSONResponse({"error": "not logged in (or the session ended)"}, 401)
        if not authority.csrf_ok(who.token, request.headers.get(CSRF_HEADER, "")):
            return JSONResponse(
                {"error": "refused: no valid anti-CSRF token (reload the page)"}, 403
            )
        op = str(request.path_params["op"])
        if op not in OPS:
            return JSONResponse({"error": f"no operation {op[:20]!r}"}, 404)
        try:
            vm_id = vm_id_param(request)
            message = await long_work(core, request, who, functools.partial(_op, core, op, vm_id))
        except Exception as exc:
            return error_json(exc)
        return JSONResponse({"ok": True, "message": message})

    async def session_page(request: Request) -> Response:
        who = await authority.session(request)
        if who is None:
            return Response(status_code=303, headers={"location": "/"})
        try:
            vm_id = vm_id_param(request)
            vm = await quickly(core.flow.check_vm, who.principal, vm_id)
        except Exception as exc:
            if isinstance(exc, L7rError):
                return render("error.html", exc.status, who=who, csrf=who.csrf, message=exc.message)
            return error_json(exc)
        return render(
            "session.html",
            who=who,
            csrf=who.csrf,
            vm_id=vm.id,
            vm_name=vm.name,
            ws_url=f"/ws/desktops/{vm.id}",
            keyboard_layouts=KEYBOARD_LAYOUTS,
        )

    return [
        Route("/api/desktops", list_json, methods=["GET"]),
        Route("/api/desktops/{vm_id}/{op}", operate, methods=["POST"]),
        Route("/desktops/{vm_id}", session_page, methods=["GET"]),
    ]


def _op(core: L7rCore, op: str, vm_id: int, principal: Principal) -> str:
    if op == "start":
        return flowport.start_vm(core, principal, vm_id)
    if op == "stop":
        return flowport.stop_vm(core, principal, vm_id, lambda _text: None)
    return flowport.restart_vm(core, principal, vm_id, lambda _text: None)


async def long_work(
    core: L7rCore, request: Request, who: LoggedIn, work: Callable[[Principal], str]
) -> str:
    """``work(principal)`` in the connect pool, admitted by the gate under the caps per
    address, user and node (as the L7R's ``stop_vm``)."""
    address = request.client.host if request.client else "unknown"
    ticket = core.gate.admit(address)
    try:
        ticket.bind_user(who.principal.user_id, who.principal.login)
        ticket.handed_over = True
        future = core.connects.submit(work, who.principal)
        future.add_done_callback(lambda _: ticket.release())
    finally:
        if not ticket.handed_over:
            ticket.release()
    return await asyncio.wrap_future(future)
