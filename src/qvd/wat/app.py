"""Mounting the WAT on the API's app: its pages at ``/``, static files at ``/static``,
the security headers of every WAT response, and the shared refusals (no session → the
login page; no anti-CSRF token → 403)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qvd.wat.assets import static_file, vendor_file
from qvd.wat.csp import CSP
from qvd.wat.pages import ROUTERS
from qvd.wat.port import ActionPort
from qvd.wat.web import CsrfRefused, LoginNeeded, login_redirect

__all__ = ["CSP", "install"]


_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds :data:`_HEADERS` to every response outside ``/api`` (the API's own pages,
    its OpenAPI docs among them, keep theirs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith("/api"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _HEADERS if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _login_needed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginNeeded)
    return login_redirect(request, exc.reason)


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(
        "refused: this request changes something and did not carry its page's anti-CSRF "
        "token (reload the page and try again)",
        status_code=403,
    )


def install(app: FastAPI, port: ActionPort) -> None:
    """Serve the WAT from ``app`` (at ``/``), acting through ``port``."""
    app.state.qvd_wat_port = port
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(LoginNeeded, _login_needed)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.router.routes.append(Route("/static/vendor/{name}", vendor_file, include_in_schema=False))
    app.router.routes.append(Route("/static/{path:path}", static_file, include_in_schema=False))
    for router in ROUTERS:
        app.include_router(router)
