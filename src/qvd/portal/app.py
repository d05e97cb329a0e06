"""``make_app(core)``: the portal's Starlette app (routes of common15's page contract).

GET  /                     login page, or the desktops page once logged in
POST /login, /logout       plain HTML forms (logout: CSRF field)
GET  /api/desktops         the user's desktops as JSON (the page polls it)
POST /api/desktops/{id}/{start|stop|restart}   X-CSRF-Token header
GET  /desktops/{id}        the session page; WS /ws/desktops/{id} its socket
GET  /static/..., /vendor/novnc/{core,vendor/pako}/...
(and the spy's routes, ``qvd.portal.spy.routes(core)``, when that module is there)
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qvd.l7r.core import L7rCore
from qvd.l7r.errors import L7rError, Unauthorized, database_outage
from qvd.portal import desktops, session
from qvd.portal.auth import COOKIE, CSRF_FIELD, Authority, address_of
from qvd.portal.web import (
    NOVNC_ALLOWED,
    NOVNC_ROOT,
    STATIC_ROOT,
    CrossOriginPostRefused,
    FormTooLarge,
    SecurityHeaders,
    read_form,
    render,
    serve_file,
)

__all__ = ["make_app"]

log = logging.getLogger(__name__)


def _set_cookie(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, token, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


def _clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def _see_other(location: str = "/") -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


def _spy_routes(core: L7rCore) -> list[BaseRoute]:
    """The spy engineer's routes (``qvd.portal.spy``), when this build has them."""
    try:
        spy: Any = importlib.import_module("qvd.portal.spy")
    except ImportError:
        return []
    return list(spy.routes(core))


def failure_response(method: str, path: str, exc: Exception) -> Response:
    """What a request that failed unexpectedly gets: the database down is a 503 saying
    so, an L7R refusal its status and reason, anything else a bare 500 (the log has
    the details)."""
    if isinstance(exc, L7rError):
        return PlainTextResponse(exc.message + "\n", status_code=exc.status)
    outage = database_outage(exc)
    if outage is not None:
        return PlainTextResponse(outage.message + "\n", status_code=outage.status)
    log.error("portal: %s %s failed", method, path, exc_info=exc)
    return PlainTextResponse(f"internal error: {type(exc).__name__}\n", status_code=500)


class Failures:
    """Answers an HTTP request whose route raised (before its response started) with
    ``failure_response``, instead of uvicorn's bare 500 and a logged traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            method, path = str(scope.get("method")), str(scope.get("path"))
            await failure_response(method, path, exc)(scope, receive, send)


def make_app(core: L7rCore) -> Starlette:
    authority = Authority(core)
    timeout = core.config.get_int("l7r.portal.session.timeout")

    async def home(request: Request) -> Response:
        who = await authority.session(request)
        if who is None:
            response = render("login.html", error="", login="", tenant="")
            if COOKIE in request.cookies:
                _clear_cookie(response)  # a session that ended: its cookie goes too
            return response
        # the rows come with the page: Connect is there at once, without waiting for
        # the page's script and its first /api/desktops (which then keeps them live)
        try:
            rows = await core.quickly(desktops.desktops_of, core, who.principal.user_id)
        except Exception as exc:
            return failure_response("GET", "/", exc)
        return render("desktops.html", who=who, csrf=who.csrf, desktops=rows)

    async def log_in(request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormTooLarge:
            return PlainTextResponse("the login form is too large\n", status_code=413)
        login, tenant = form.get("login", ""), form.get("tenant", "")
        try:
            token = await authority.log_in(
                login, form.get("password", ""), tenant, address_of(request),
                request.headers.get("user-agent"),
            )  # fmt: skip
        except Exception as exc:
            if isinstance(exc, L7rError):
                status, reason = exc.status, exc.message
            elif (outage := database_outage(exc)) is not None:
                status, reason = outage.status, outage.message
            else:
                log.error("portal login failed", exc_info=exc)
                status, reason = 500, f"internal error: {type(exc).__name__}"
            response = render(
                "login.html", status, error=reason, login=login[:200], tenant=tenant[:200]
            )
            if isinstance(exc, Unauthorized):
                response.headers["www-authenticate"] = 'FormBased realm="QVD portal"'
            return response
        done = _see_other("/")
        _set_cookie(done, token, timeout)
        return done

    async def log_out(request: Request) -> Response:
        who = await authority.session(request)
        try:
            form = await read_form(request)
        except FormTooLarge:
            return PlainTextResponse("the logout form is too large\n", status_code=413)
        if who is not None:
            if not authority.csrf_ok(who.token, form.get(CSRF_FIELD, "")):
                return PlainTextResponse(
                    "refused: no valid anti-CSRF token (reload the page)\n", status_code=403
                )
            await authority.log_out(who.token)
        response = _see_other("/")
        _clear_cookie(response)
        return response

    async def static(request: Request) -> Response:
        return serve_file(STATIC_ROOT, str(request.path_params["path"]))

    async def novnc(request: Request) -> Response:
        return serve_file(NOVNC_ROOT, str(request.path_params["path"]), NOVNC_ALLOWED)

    routes: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Route("/login", log_in, methods=["POST"]),
        Route("/logout", log_out, methods=["POST"]),
        *desktops.routes(core, authority),
        *session.routes(core, authority),
        *_spy_routes(core),
        Route("/static/{path:path}", static, methods=["GET"]),
        Route("/vendor/novnc/{path:path}", novnc, methods=["GET"]),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(CrossOriginPostRefused)]
    app = Starlette(routes=routes, middleware=[Middleware(Failures), *middleware])
    app.state.qvd_portal_authority = authority
    return app
