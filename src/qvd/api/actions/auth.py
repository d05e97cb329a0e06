"""Administrator login, sessions and the rate limit on failed logins.

- Passwords are argon2 hashes (``qvd.db.passwords``); an unknown name costs the same
  hash check as a wrong password, and both answer the same 3200 message.
- A session token is 32 random bytes (URL-safe base64) that only the client holds;
  the database keeps its SHA-256 (``api_sessions.token_sha256``). It expires after
  ``api.session.timeout`` idle seconds; each use extends it. It is never accepted in
  a URL: clients send it in ``Authorization: Bearer``, the ``X-QVD-Sid`` header, the
  ``sid`` cookie (Secure, HttpOnly, SameSite=Strict) or, for qa4, as ``sid`` in the
  JSON body of ``POST /api``.
- Failed logins back off (``qvd.loginlimit``, the limiter the L7R uses too): past
  ``api.login.rate_limit.attempts`` failures an address or a login name waits 1, 2, 4 …
  up to ``api.login.rate_limit.window`` seconds, and the count decays. An address in
  backoff is refused before its password is checked; a login's backoff applies, after
  the check, only to addresses that have been failing, so strangers guessing a name
  (the superadmin's too) never keep its owner out.
- ``wat.multitenant`` (database first, then file): in multitenant mode the tenant
  name is part of the login (superadmins use ``*``, which is also the default); in
  monotenant mode it is ignored and superadmins cannot log in, except the recovery
  administrator (id 0).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from qvd.api.actions.principal import RECOVERY_ADMIN_ID, SUPERTENANT_ID, Principal, effective_acls
from qvd.api.errors import AuthError, RateLimited, Status
from qvd.config import Config, ConfigValueError
from qvd.db.acls import administrator_acls
from qvd.db.models import Acl, Administrator, ApiSession, Tenant
from qvd.db.passwords import match_nothing, rehash_if_needed, verify_password
from qvd.loginlimit import FailureLimiter

__all__ = [
    "AclCache",
    "LoginLimiter",
    "create_session",
    "delete_session",
    "hash_token",
    "load_principal",
    "login",
    "resolve_session",
]

_WRONG = "wrong login, password or tenant"
_TOUCH_EVERY = 60  # seconds between two extensions of a session's expiry


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LoginLimiter(FailureLimiter):
    """Failed logins per key in a sliding window (in this process): the shared
    :class:`~qvd.loginlimit.FailureLimiter`, configured by ``api.login.rate_limit.*``
    and answering QVD's rate-limit error."""

    def __init__(self, attempts: int, window: float = 60.0) -> None:
        if attempts < 1 or window <= 0:
            raise ConfigValueError(
                f"the login rate limit needs at least 1 attempt in a positive window, not "
                f"{attempts} in {window} s (api.login.rate_limit.attempts / .window)"
            )
        super().__init__(attempts, window)

    @classmethod
    def from_config(cls, config: Config) -> LoginLimiter:
        """The limiter ``api.login.rate_limit.attempts`` and ``.window`` describe."""
        return cls(
            config.get_int("api.login.rate_limit.attempts"),
            config.get_int("api.login.rate_limit.window"),
        )

    def check(self, *keys: str) -> None:
        """Raise :class:`RateLimited` when one of ``keys`` may not try now."""
        self.refuse_after(self.blocked_for(*keys))

    @staticmethod
    def refuse_after(wait: float) -> None:
        """Raise :class:`RateLimited` when ``wait`` (seconds) is not 0."""
        if wait > 0:
            seconds = math.ceil(wait)
            raise RateLimited(
                f"too many failed logins: try again in {seconds} s", retry_after=seconds
            )


class AclCache:
    """Effective ACLs per administrator, kept a few seconds (cleared on role edits)."""

    def __init__(self, ttl: float = 3.0) -> None:
        self.ttl = ttl
        self._entries: dict[int, tuple[float, frozenset[str]]] = {}
        self._all: frozenset[str] | None = None
        self._lock = threading.Lock()
        self.also_clear: list[Callable[[], None]] = []

    def clear(self) -> None:
        """Forget every administrator's ACLs (and what depends on them)."""
        with self._lock:
            self._entries.clear()
        for forget in self.also_clear:
            forget()

    def get(self, session: Session, admin_id: int, superadmin: bool) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(admin_id)
            if hit is not None and hit[0] > now:
                return hit[1]
        if self._all is None:
            self._all = frozenset(session.scalars(select(Acl.name)))
        acls = effective_acls(
            administrator_acls(session, admin_id),
            self._all,
            admin_id=admin_id,
            superadmin=superadmin,
        )
        with self._lock:
            self._entries[admin_id] = (now + self.ttl, acls)
        return acls


@dataclass(frozen=True, slots=True)
class _AdminRow:
    id: int
    name: str
    tenant_id: int
    tenant_name: str
    tenant_blocked: bool
    language: str
    block: int
    password: str | None


def _admin_rows(session: Session, *conditions: object) -> list[_AdminRow]:
    stmt = (
        select(
            Administrator.id,
            Administrator.name,
            Administrator.tenant_id,
            Tenant.name,
            Tenant.blocked,
            Administrator.language,
            Administrator.block,
            Administrator.password,
        )
        .join(Tenant, Tenant.id == Administrator.tenant_id)
        .where(*conditions)  # type: ignore[arg-type]
    )
    return [_AdminRow(*r) for r in session.execute(stmt)]


def load_principal(
    session: Session, admin_id: int, cache: AclCache, *, token: str | None = None
) -> Principal:
    rows = _admin_rows(session, Administrator.id == admin_id)
    if not rows:
        raise AuthError(
            "the administrator of this session no longer exists", Status.SESSION_EXPIRED
        )
    a = rows[0]
    if a.tenant_blocked:
        raise AuthError(f"tenant {a.tenant_name!r} is blocked", Status.TENANT_RESTRICTED)
    return Principal(
        admin_id=a.id,
        admin_name=a.name,
        tenant_id=a.tenant_id,
        tenant_name=a.tenant_name,
        acls=cache.get(session, a.id, a.tenant_id == SUPERTENANT_ID),
        language=a.language,
        block=a.block,
        session_token=token,
    )


def login(
    session: Session,
    config: Config,
    limiter: LoginLimiter,
    *,
    name: str,
    password: str,
    tenant: str | None,
    address: str | None,
) -> int:
    """The id of the administrator these credentials belong to."""
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        raise AuthError("login and password are required", Status.NO_CREDENTIALS)
    multitenant = config.get_bool("wat.multitenant")
    tenant_name = (tenant or "*") if multitenant else None
    address_key, login_key = f"ip:{address}", f"login:{name}@{tenant_name}"
    limiter.check(address_key)
    if multitenant:
        rows = _admin_rows(session, Administrator.name == name, Tenant.name == tenant_name)
    else:
        rows = _admin_rows(
            session,
            Administrator.name == name,
            (Administrator.tenant_id > SUPERTENANT_ID) | (Administrator.id == RECOVERY_ADMIN_ID),
        )
    found = rows[0] if len(rows) == 1 else None
    if found is None or not found.password:
        ok = match_nothing(password)
    else:
        ok = verify_password(found.password, password)
    limiter.refuse_after(limiter.verdict(address_key, login_key, accepted=ok))
    if found is None or not ok:
        raise AuthError(_WRONG, Status.WRONG_CREDENTIALS)
    _upgrade_hash(session, found.id, found.password, password)
    if found.tenant_blocked:
        raise AuthError(f"tenant {found.tenant_name!r} is blocked", Status.TENANT_RESTRICTED)
    return found.id


def _upgrade_hash(session: Session, admin_id: int, stored: str | None, password: str) -> None:
    """Store a hash with today's parameters when the verified one is older (unless a
    concurrent change replaced it meanwhile)."""
    fresh = rehash_if_needed(stored, password) if stored else None
    if fresh is not None:
        session.execute(
            update(Administrator)
            .where(Administrator.id == admin_id, Administrator.password == stored)
            .values(password=fresh)
        )


def create_session(
    session: Session, admin_id: int, timeout: int, address: str | None
) -> tuple[str, dt.datetime]:
    """A new session token (shown to the client once) and its expiry."""
    token = secrets.token_urlsafe(32)
    tenant_id = session.scalar(select(Administrator.tenant_id).where(Administrator.id == admin_id))
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=timeout)
    session.add(
        ApiSession(
            token_sha256=hash_token(token),
            administrator_id=admin_id,
            tenant_id=tenant_id,
            expires=expires,
            ip=address,
        )
    )
    session.flush()
    return token, expires


def resolve_session(session: Session, token: str, timeout: int, *, touch: bool = True) -> int:
    """The administrator of a live session. With ``touch`` (a request of the admin's),
    its expiry is pushed forward when it was last pushed more than a minute ago (so a
    burst of reads writes nothing); the re-runs of ``/api/ws`` do not touch it, so an
    unattended live page still times out."""
    digest = hash_token(token)
    now = dt.datetime.now(dt.UTC)
    row = session.execute(
        select(ApiSession.administrator_id, ApiSession.last_used).where(
            ApiSession.token_sha256 == digest, ApiSession.expires > now
        )
    ).first()
    if row is None:
        raise AuthError(
            "the session has expired or does not exist; log in again", Status.SESSION_EXPIRED
        )
    if touch and row.last_used < now - dt.timedelta(seconds=_TOUCH_EVERY):
        session.execute(
            update(ApiSession)
            .where(ApiSession.token_sha256 == digest)
            .values(last_used=now, expires=now + dt.timedelta(seconds=timeout))
        )
    return int(row.administrator_id)


def delete_session(session: Session, token: str) -> bool:
    result = session.execute(delete(ApiSession).where(ApiSession.token_sha256 == hash_token(token)))
    return bool(getattr(result, "rowcount", 0))
