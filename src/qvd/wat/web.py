"""One WAT request: who is logged in (:class:`Page`), rendering a template with the
page's language and anti-CSRF token, and the refusals every page shares.

Every page route takes ``page: Page = Depends(page_for)`` (read-only routes) or
``Depends(mutating_page_for)`` (routes that change something: the anti-CSRF token is
checked, from the ``X-CSRF-Token`` header or the ``csrf`` form field). Without a valid
session the browser is sent to ``/login`` (htmx requests get ``HX-Redirect``)."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from qvd.wat.i18n import Translator, choose_language, translator
from qvd.wat.port import ActionPort, Answer, WatError, csrf_token

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "TENANT_COOKIE",
    "CsrfRefused",
    "LoginNeeded",
    "MutatingPage",
    "Page",
    "ReadPage",
    "login_redirect",
    "mutating_page_for",
    "page_for",
    "port_of",
    "render",
    "safe_next",
    "setup_cache",
    "templates",
]

SESSION_COOKIE = "sid"  # the API's session cookie: the WAT sets it for path "/"
TENANT_COOKIE = "wat_tenant"  # a superadmin's chosen tenant ("all" or an id)
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SETUP_TTL = 5.0  # seconds a session's current_admin_setup is reused
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_HERE = Path(__file__).parent


class LoginNeeded(Exception):
    """No valid session: go to the login page (``reason`` shown there)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class CsrfRefused(Exception):
    """A request that changes something came without its page's anti-CSRF token."""


templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


class _SetupCache:
    """``current_admin_setup`` rows of recent sessions (keyed by the token's digest)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, sid: str) -> dict[str, Any] | None:
        key = hashlib.sha256(sid.encode()).hexdigest()
        with self._lock:
            hit = self._rows.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._rows.pop(key, None)
                return None
            return hit[1]

    def put(self, sid: str, row: dict[str, Any]) -> None:
        with self._lock:
            if len(self._rows) > 5000:
                self._rows.clear()
            self._rows[hashlib.sha256(sid.encode()).hexdigest()] = (
                time.monotonic() + SETUP_TTL,
                row,
            )

    def drop(self, sid: str) -> None:
        with self._lock:
            self._rows.pop(hashlib.sha256(sid.encode()).hexdigest(), None)


setup_cache = _SetupCache()


def port_of(request: Request) -> ActionPort:
    port: Any = request.app.state.qvd_wat_port
    return port  # type: ignore[no-any-return]


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


@dataclass(slots=True)
class Page:
    """The logged-in administrator of one request, and how to act as them."""

    request: Request
    port: ActionPort
    sid: str
    setup: dict[str, Any]
    lang: str
    t: Translator
    csrf: str
    tenant_choice: int | None = None  # a superadmin's chosen tenant; None: all
    flashes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def admin_name(self) -> str:
        return str(self.setup.get("admin_name", ""))

    @property
    def superadmin(self) -> bool:
        return bool(self.setup.get("superadmin"))

    @property
    def acls(self) -> frozenset[str]:
        return frozenset(self.setup.get("acls") or ())

    @property
    def block(self) -> int:
        """Rows per page: the administrator's, else the tenant's, else 10."""
        for key in ("admin_block", "tenant_block"):
            value = self.setup.get(key)
            if isinstance(value, int) and value > 0:
                return value
        return 10

    def can(self, *acls: str) -> bool:
        """Whether the administrator holds every one of ``acls``."""
        return all(a in self.acls for a in acls)

    def call(self, action: str, **kw: Any) -> Answer:
        """Run ``action`` as this administrator (see :meth:`ActionPort.call`); a gone
        session raises :class:`LoginNeeded`."""
        try:
            return self.port.call(self.sid, action, address=_address(self.request), **kw)
        except WatError as exc:
            if exc.auth:
                setup_cache.drop(self.sid)
                raise LoginNeeded(exc.message) from None
            raise

    def tenant_filter(self) -> dict[str, Any]:
        """The filter that limits a list to the chosen tenant (empty: all or own)."""
        return {"tenant_id": self.tenant_choice} if self.tenant_choice is not None else {}

    def flash(self, kind: str, text: str) -> None:
        """A message shown at the top of the rendered page (``ok`` or ``error``)."""
        self.flashes.append((kind, text))


def _setup(port: ActionPort, sid: str, address: str | None) -> dict[str, Any]:
    row = setup_cache.get(sid)
    if row is None:
        try:
            answer = port.call(sid, "current_admin_setup", address=address)
        except WatError as exc:
            raise LoginNeeded(exc.message if exc.auth else "") from None
        row = answer.rows[0] if answer.rows else {}
        setup_cache.put(sid, row)
    return row


def page_for(request: Request) -> Page:
    """The page's administrator (FastAPI dependency); :class:`LoginNeeded` without one."""
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        raise LoginNeeded()
    port = port_of(request)
    setup = _setup(port, sid, _address(request))
    lang = choose_language(
        setup.get("admin_language"), setup.get("tenant_language"),
        request.headers.get("accept-language"),
    )  # fmt: skip
    choice: int | None = None
    if setup.get("superadmin"):
        raw = request.cookies.get(TENANT_COOKIE, "all")
        choice = int(raw) if raw.lstrip("-").isdigit() and len(raw) < 12 else None
    return Page(
        request=request, port=port, sid=sid, setup=setup, lang=lang, t=translator(lang),
        csrf=csrf_token(sid), tenant_choice=choice,
    )  # fmt: skip


async def mutating_page_for(request: Request) -> Page:
    """:func:`page_for` for a request that changes something: its anti-CSRF token
    (header, or form field of a plain form) must be the session's."""
    page = page_for(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.method not in _SAFE:
        kind = request.headers.get("content-type", "")
        if kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if sent is None or not hmac.compare_digest(sent.encode(), page.csrf.encode()):
        raise CsrfRefused()
    return page


def render(
    page: Page | None,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    request: Request | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """``template`` rendered for ``page`` (or, on the login page, for ``request``)."""
    req = page.request if page is not None else request
    assert req is not None
    lang = (
        page.lang
        if page is not None
        else choose_language(None, None, req.headers.get("accept-language"))
    )
    values: dict[str, Any] = {
        "page": page,
        "request": req,
        "lang": lang,
        "_": page.t if page is not None else translator(lang),
        "csrf": page.csrf if page is not None else "",
        "partial": req.headers.get("hx-request") == "true"
        and req.headers.get("hx-boosted") != "true",
        **(context or {}),
    }
    html = templates.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
    response.headers["Cache-Control"] = "no-store"
    return response


def login_redirect(request: Request, reason: str = "") -> Response:
    """To the login page, coming back here afterwards (htmx: by ``HX-Redirect``)."""
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    query = {"next": target} if target not in ("/", "/login") else {}
    if reason:
        query["expired"] = "1"
    url = "/login" + ("?" + urllib.parse.urlencode(query) if query else "")
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def safe_next(target: str | None) -> str:
    """A ``next`` to go to after login: only a path of this site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


ReadPage = Annotated[Page, Depends(page_for)]
"""A route's administrator (read-only routes)."""
MutatingPage = Annotated[Page, Depends(mutating_page_for)]
"""A route's administrator, its anti-CSRF token checked (routes that change something)."""
