"""Who is logged in to the portal: the login form, the session cookie, CSRF.

A portal session is an L7R user token (multi-use, expiring after
``l7r.portal.session.timeout``) in the cookie ``qvd-portal``; the database keeps only its
digest. Every request presents it again to the auth chain (``core.node.login`` with
``Authorization: Bearer``), so a blocked user, a blocked tenant or a changed password
ends the session at the next request, and the chain's failed-login limits apply to
forged cookies too. The anti-CSRF token of a page is HMAC(key, token): it changes with
the session and never reveals the token.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import text
from starlette.requests import HTTPConnection

from qvd.l7r.auth import Principal, issue_token, store_auth_params
from qvd.l7r.auth.tokens import token_digest
from qvd.l7r.core import L7rCore
from qvd.l7r.errors import Unauthorized
from qvd.l7r.history import client_info, record_login
from qvd.l7r.wire import basic_login

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "Authority",
    "LoggedIn",
    "address_of",
]

COOKIE = "qvd-portal"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
MAX_FIELD = 1024  # characters of a login, password or tenant accepted from the form
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """A request's user, as the auth chain sees it now, and its session token."""

    principal: Principal
    token: str
    csrf: str


def address_of(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


class Authority:
    """Logins, session checks and logouts of one portal (blocking work in the core's
    pools, awaited from the event loop)."""

    def __init__(self, core: L7rCore) -> None:
        self.core = core
        self._csrf_key = secrets.token_bytes(32)

    async def _in(self, pool: Any, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def csrf_for(self, token: str) -> str:
        return hmac.new(self._csrf_key, token.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, token: str, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf_for(token), presented)

    def _basic(self, login: str, password: str, tenant: str) -> str:
        """The ``Authorization: Basic`` value the L7R's clients would send."""
        if tenant:
            separators = self.core.live.get().get("l7r.auth.plugin.default.separators")
            if not separators:
                raise Unauthorized("this node takes no tenant in logins: leave it empty")
            login = f"{login}{separators[0]}{tenant}"
        raw = f"{login}:{password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    async def log_in(
        self, login: str, password: str, tenant: str, address: str, user_agent: str | None = None
    ) -> str:
        """A new session token for these credentials (``Unauthorized`` with the chain's
        reason otherwise). Each login makes a new token: a cookie planted before it is
        never promoted to a session (no fixation)."""
        login, tenant = login.strip(), tenant.strip()
        if not login or not password:
            raise Unauthorized("enter your login and password")
        if max(len(login), len(password), len(tenant)) > MAX_FIELD:
            raise Unauthorized("the login, password or tenant is too long")
        headers = {"authorization": self._basic(login, password, tenant)}
        turn = (address, basic_login(headers["authorization"]))
        login_done = self.core.logins.submit(turn, self.core.node.login, headers, address)
        principal = await record_login(
            self.core.history, self.core.live.get(), asyncio.wrap_future(login_done),
            headers, address, client_info(user_agent, {}), "portal",
        )  # fmt: skip
        return await self._in(self.core.quick, self._issue, principal)

    def _issue(self, principal: Principal) -> str:
        lifetime = dt.timedelta(seconds=self.core.config.get_int("l7r.portal.session.timeout"))
        with self.core.engine.begin() as conn:
            params_id = store_auth_params(conn, principal.params)
            return issue_token(
                conn, principal.user_id, multi_use=True, auth_params_id=params_id,
                lifetime=lifetime, expires_by=principal.token_expires,
            )  # fmt: skip

    async def session(self, conn: HTTPConnection) -> LoggedIn | None:
        """The logged-in user of a request (None: no cookie, or one no longer valid)."""
        token = conn.cookies.get(COOKIE, "")
        if not token or len(token) > 256:
            return None
        headers = {"authorization": f"Bearer {token}"}
        try:
            principal = await self._in(
                self.core.quick, self.core.node.login, headers, address_of(conn)
            )
        except Unauthorized:
            return None
        if principal.token_vm_id is not None:
            return None  # a token bound to one VM is a client's, not a portal session
        return LoggedIn(principal, token, self.csrf_for(token))

    async def log_out(self, token: str) -> None:
        await self._in(self.core.quick, self._revoke, token)

    def _revoke(self, token: str) -> None:
        with self.core.engine.begin() as conn:
            conn.execute(
                text("DELETE FROM user_tokens WHERE token_sha256 = :d"), {"d": token_digest(token)}
            )
