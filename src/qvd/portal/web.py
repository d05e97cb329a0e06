"""What every portal response shares: templates, security headers, form bodies,
static files from allow-listed trees (no imports of the WAT: its own small equivalents)."""

from __future__ import annotations

import functools
import mimetypes
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CROSS_ORIGIN_POSTS",
    "CSP",
    "KEYBOARD_LAYOUTS",
    "NOVNC_ALLOWED",
    "NOVNC_ROOT",
    "STATIC_ROOT",
    "CrossOriginPostRefused",
    "FormTooLarge",
    "SecurityHeaders",
    "read_form",
    "render",
    "same_origin",
    "serve_file",
]

HERE = Path(__file__).parent
STATIC_ROOT = HERE / "static"
NOVNC_ROOT = HERE / "vendor" / "node_modules" / "@novnc" / "novnc"
NOVNC_ALLOWED: tuple[str, ...] = (
    "core/",
    "vendor/pako/",
)  # the ES modules the viewer imports, nothing else
STATIC_SUFFIXES = frozenset({".css", ".js", ".svg", ".png", ".ico", ".woff2"})
MAX_FORM = 16 * 1024  # bytes of a login or logout form

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)
"""No inline script or style anywhere; no framing (clickjacking)."""

_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=31536000"),
]

# keyboard layouts offered on the session page (xkb names; the VMA passes them to setxkbmap)
KEYBOARD_LAYOUTS = (
    ("us", "English (US)"),
    ("gb", "English (UK)"),
    ("es", "Spanish"),
    ("de", "German"),
    ("fr", "French"),
    ("it", "Italian"),
    ("pt", "Portuguese"),
    ("br", "Portuguese (Brazil)"),
    ("latam", "Spanish (Latin America)"),
    ("ch", "Swiss"),
    ("be", "Belgian"),
    ("nl", "Dutch"),
    ("se", "Swedish"),
    ("no", "Norwegian"),
    ("dk", "Danish"),
    ("fi", "Finnish"),
    ("pl", "Polish"),
    ("ru", "Russian"),
    ("jp", "Japanese"),
)


@functools.cache
def novnc_modules() -> tuple[str, ...]:
    """The URLs of noVNC's ES modules, for ``<link rel="modulepreload">`` on the pages
    that load it: the browser then fetches them all at once instead of one import level
    after another (a waterfall of round trips before the desktop's socket opens)."""
    files = (
        path.relative_to(NOVNC_ROOT).as_posix()
        for prefix in NOVNC_ALLOWED
        for path in (NOVNC_ROOT / prefix).rglob("*.js")
    )
    return tuple(f"/vendor/novnc/{name}" for name in sorted(files))


templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["novnc_modules"] = novnc_modules


def same_origin(headers: Mapping[str, str]) -> bool:
    """A request's ``Origin`` (browsers send it with every POST and WebSocket) names
    this portal: ``https://`` + the ``Host`` it asked for. Absent: not a browser's
    cross-site request (allowed for plain POSTs; WebSockets require it)."""
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    return bool(host) and origin == f"https://{host}"


CROSS_ORIGIN_POSTS = frozenset({"/spy"})
"""Paths another site's page may post to: the WAT's spy form (its single-use ticket
is the credential; ``qvd.portal.spy``)."""


class CrossOriginPostRefused:
    """Refuses (403) a POST whose ``Origin`` is another site's: login CSRF (an attacker's
    page logging the victim in as the attacker) and a second line behind the CSRF
    tokens of the other forms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") not in ("GET", "HEAD")
            and scope.get("path") not in CROSS_ORIGIN_POSTS
        ):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            if not same_origin(headers):
                response = PlainTextResponse(
                    "refused: this form was sent from another site's page\n", status_code=403
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


VENDOR_MAX_AGE = 86400  # the npm tree is pinned by its lockfile: it changes with a deploy


def _cache_control(path: str, static: bool) -> bytes:
    """Pages: never stored. noVNC's modules: kept a day (a browser that reconnects to
    its desktop does not ask again for each of its ~40 modules, one import waterfall
    of round trips). Our own static files: revalidated (they change with the code)."""
    if not static:
        return b"no-store"
    if path.startswith("/vendor/"):
        return f"public, max-age={VENDOR_MAX_AGE}".encode()
    return b"no-cache"


class SecurityHeaders:
    """Adds the security headers to every HTTP response, and ``no-store`` to all but
    static files (pages hold a CSRF token and the user's desktops)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        static = path.startswith(("/static/", "/vendor/"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _HEADERS if k not in names]
                if b"cache-control" not in names:
                    extra.append((b"cache-control", _cache_control(path, static)))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status)


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (first value of each field);
    anything larger than a login form is refused (413)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise FormTooLarge
    fields: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(body.decode("utf-8", errors="replace")):
        fields.setdefault(key, value)
    return fields


class FormTooLarge(Exception):
    """A form body over ``MAX_FORM``."""


def serve_file(root: Path, relative: str, allowed_prefixes: tuple[str, ...] = ("",)) -> Response:
    """A file under ``root`` if ``relative`` names one in an allowed subtree, with an
    allowed suffix and no way out of ``root`` (404 for anything else)."""
    missing = PlainTextResponse("not found\n", status_code=404)
    if not relative.startswith(allowed_prefixes) or "\\" in relative or "\0" in relative:
        return missing
    parts = relative.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return missing
    base = root.resolve()
    try:
        path = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return missing
    if not path.is_relative_to(base) or not path.is_file() or path.suffix not in STATIC_SUFFIXES:
        return missing
    media = "text/javascript" if path.suffix == ".js" else mimetypes.guess_type(path.name)[0]
    return FileResponse(path, media_type=media or "application/octet-stream")
