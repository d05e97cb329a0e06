"""What one API app holds (database, configuration, login limiter, ACL cache) and the
authentication of a request from a session token or from credentials."""

from __future__ import annotations

import dataclasses
import hmac
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from qvd.api.actions.audit import AuditEntry, write_audit
from qvd.api.actions.auth import (
    AclCache,
    LoginLimiter,
    create_session,
    hash_token,
    load_principal,
    login,
    resolve_session,
)
from qvd.api.actions.dispatch import Runner
from qvd.api.actions.principal import Principal
from qvd.api.errors import ApiError, AuthError, Forbidden, Status
from qvd.config import Config
from qvd.db import LiveConfig
from qvd.wat.port import csrf_token

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SESSION_HEADER",
    "AppState",
    "Credentials",
    "PrincipalCache",
    "app_state",
    "check_cookie_use",
    "client_address",
    "token_from_headers",
]

SESSION_COOKIE = "sid"
SESSION_HEADER = "X-QVD-Sid"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


PRINCIPAL_TTL = 2.0


class PrincipalCache:
    """Principals of recently seen session tokens (keyed by the token's digest)."""

    def __init__(self, ttl: float = PRINCIPAL_TTL) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Principal | None:
        key = hash_token(token)
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._entries.pop(key, None)
                return None
            return hit[1]

    def put(self, token: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10000:
                self._entries.clear()
            self._entries[hash_token(token)] = (time.monotonic() + self.ttl, principal)

    def drop(self, token: str) -> None:
        with self._lock:
            self._entries.pop(hash_token(token), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """How a request identifies its administrator: a token, or login + password."""

    token: str | None = None
    login: str | None = None
    password: str | None = None
    tenant: str | None = None
    source: str | None = None
    address: str | None = None


@dataclass(slots=True, kw_only=True)
class AppState:
    engine: Engine
    live_config: LiveConfig
    limiter: LoginLimiter
    acl_cache: AclCache
    runner: Runner
    principals: PrincipalCache

    @classmethod
    def build(cls, config: Config, engine: Engine) -> AppState:
        cache = AclCache()
        principals = PrincipalCache()
        cache.also_clear.append(principals.clear)
        live = LiveConfig(config, engine)
        return cls(
            engine=engine,
            live_config=live,
            limiter=LoginLimiter.from_config(config),
            acl_cache=cache,
            runner=Runner(engine=engine, live_config=live, acl_cache=cache),
            principals=principals,
        )

    @property
    def config(self) -> Config:
        """The file configuration with the database's rows over it (re-read every few
        seconds, and at once after this process changes them)."""
        return self.live_config.get()

    @property
    def session_timeout(self) -> int:
        return self.config.get_int("api.session.timeout")

    def authenticate(
        self, creds: Credentials, *, new_session: bool = False, touch: bool = True
    ) -> Principal:
        """The administrator behind ``creds``; with ``new_session`` (and a password) a
        session is opened and its token is in ``principal.session_token``; without
        ``touch`` a session's expiry is not pushed forward (see ``resolve_session``).

        A session's principal is kept for :data:`PRINCIPAL_TTL` seconds, so a burst of
        requests reads the database once; logging out forgets it at once, and other
        changes (a deleted administrator, a blocked tenant) apply within that time."""
        if creds.token is not None:
            hit = self.principals.get(creds.token)
            if hit is not None:
                return dataclasses.replace(hit, source=creds.source, address=creds.address)
        try:
            principal = self._authenticate(creds, new_session, touch)
        except ApiError as exc:
            if creds.token is None:
                write_audit(
                    self.engine, principal=None, admin_name=creds.login, action="login",
                    type_of_action="login", qvd_object="administrator",
                    arguments={"tenant": creds.tenant}, entries=[AuditEntry(None, None, exc.code)],
                    source=creds.source, address=creds.address,
                )  # fmt: skip
            raise
        if principal.session_token is not None:
            self.principals.put(principal.session_token, principal)
        if creds.token is None and new_session:
            write_audit(
                self.engine, principal=principal, action="login", type_of_action="login",
                qvd_object="administrator", arguments={"tenant": creds.tenant},
                entries=[AuditEntry(principal.admin_id, principal.admin_name, Status.OK)],
                source=creds.source, address=creds.address,
            )  # fmt: skip
        return principal

    def forget(self, token: str) -> None:
        self.principals.drop(token)

    def _authenticate(self, creds: Credentials, new_session: bool, touch: bool) -> Principal:
        with Session(self.engine) as session, session.begin():
            token = creds.token
            if token is not None:
                admin_id = resolve_session(session, token, self.session_timeout, touch=touch)
            elif creds.login is not None or creds.password is not None:
                admin_id = login(
                    session, self.config, self.limiter, name=creds.login or "",
                    password=creds.password or "", tenant=creds.tenant, address=creds.address,
                )  # fmt: skip
                if new_session:
                    token, _ = create_session(
                        session, admin_id, self.session_timeout, creds.address
                    )
            else:
                raise AuthError(
                    "no credentials: log in (login, password, tenant) or send a session token",
                    Status.NO_CREDENTIALS,
                )
            principal = load_principal(session, admin_id, self.acl_cache, token=token)
        return dataclasses.replace(principal, source=creds.source, address=creds.address)


def app_state(conn: HTTPConnection) -> AppState:
    state: Any = conn.app.state.qvd
    assert isinstance(state, AppState)
    return state


def client_address(conn: HTTPConnection) -> str | None:
    return conn.client.host if conn.client else None


def token_from_headers(conn: HTTPConnection, *, check_cookie: bool = True) -> str | None:
    """A session token from ``Authorization: Bearer``, ``X-QVD-Sid`` or the cookie.

    The cookie is what a browser sends by itself, so a token taken from it is checked
    against cross-site use (:func:`check_cookie_use`) unless ``check_cookie`` is off (the
    caller checks it once it knows whether the request changes something); a header is
    not checked (another site's page cannot set one)."""
    auth = conn.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    header = conn.headers.get(SESSION_HEADER)
    if header:
        return header.strip()
    cookie = conn.cookies.get(SESSION_COOKIE) or None
    if cookie is not None and check_cookie:
        check_cookie_use(conn, cookie)
    return cookie


def check_cookie_use(conn: HTTPConnection, token: str) -> None:
    """Refuse a cookie-authenticated request that another site could have made: an
    HTTP request that may change something (any method but GET, HEAD, OPTIONS) must
    carry the page's anti-CSRF token in ``X-CSRF-Token`` (``qvd.wat.port.csrf_token``);
    a WebSocket must come from a page of this origin (its ``Origin`` names this host)."""
    if conn.scope.get("type") == "websocket":
        origin = conn.headers.get("origin")
        host = conn.headers.get("host", "")
        if origin is not None and origin.split("://", 1)[-1].rstrip("/") != host:
            raise Forbidden(
                f"a WebSocket authenticated by the session cookie must come from a page of "
                f"this server (Origin {origin[:100]!r} is another site)",
                Status.FORBIDDEN_ACTION,
            )
        return
    if conn.scope.get("method", "GET") in _SAFE_METHODS:
        return
    sent = conn.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(token).encode()):
        raise Forbidden(
            f"a request authenticated by the session cookie must carry its page's "
            f"{CSRF_HEADER} header (a cross-site request is refused); clients that are not "
            "browsers send the token in 'Authorization: Bearer' instead",
            Status.FORBIDDEN_ACTION,
        )
