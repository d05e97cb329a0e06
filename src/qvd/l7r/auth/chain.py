"""The authentication chain: headers in, a ``Principal`` out, or ``Unauthorized``.

Plugins run in the order ``l7r.auth.plugins.head`` + the tenant's ``l7r.auth.plugins``
+ ``l7r.auth.plugins.tail`` (= ``default``). After the chain the user must exist in
``users`` and neither it nor its tenant may be blocked.

Failed logins count against the user and the source address (``l7r.auth.rate_limit.*``,
``qvd.loginlimit``): an address in backoff is refused before anything is checked (it is
the guesser's own key); the user's backoff is applied only after the credentials were
checked, and only to an address that has been failing, so a stranger's guesses never
keep the user out. Unknown users cost the same password check as known ones
(``default`` plugin). A keep-alive connection's principal is re-checked on every
request (:meth:`Authenticator.recheck`).

Unknown users and wrong passwords get the same answer on purpose (telling them apart
would let anyone list the logins); every other refusal says what is wrong.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Mapping

from sqlalchemy import Connection, text

from qvd.config import Config
from qvd.l7r.auth.base import Attempt, AuthContext, AuthPlugin, Principal
from qvd.l7r.auth.credentials import Basic, auth_extras, parse_authorization, split_login
from qvd.l7r.auth.tokens import bearer_login, password_fp_sql
from qvd.l7r.errors import TooManyAttempts, Unauthorized
from qvd.loginlimit import FailureLimiter

__all__ = ["Authenticator", "PluginFactory"]

PluginFactory = Callable[[], AuthPlugin]
# told the part of a login that refused it (``qvd.l7r.metrics``: failures by plugin)
FailureSink = Callable[[str], None]


class _Blame:
    """Which part of one login is at work: a plugin's name, ``token`` (a bearer
    token), ``request`` (before the chain), ``account`` (after it: not registered,
    blocked) or ``rate_limit``; a refusal is put down to it."""

    __slots__ = ("source",)

    def __init__(self) -> None:
        self.source = "request"


def _ldap() -> AuthPlugin:
    from qvd.l7r.auth.ldap import LdapPlugin  # ldap3 is loaded only when LDAP is used

    return LdapPlugin()


def _builtin_plugins() -> dict[str, PluginFactory]:
    from qvd.l7r.auth.auto import AutoPlugin
    from qvd.l7r.auth.default import DefaultPlugin
    from qvd.l7r.auth.totp import TotpPlugin

    return {"default": DefaultPlugin, "ldap": _ldap, "auto": AutoPlugin, "totp": TotpPlugin}


class Authenticator:
    def __init__(
        self,
        config: Config,
        *,
        plugins: Mapping[str, PluginFactory] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_failure: FailureSink = lambda source: None,
    ) -> None:
        self._plugins = dict(plugins or _builtin_plugins())
        self._on_failure = on_failure
        self.limiter = FailureLimiter(
            config.get_int("l7r.auth.rate_limit.attempts"),
            config.get_int("l7r.auth.rate_limit.window"),
            clock,
        )

    def chain(self, config: Config, tenant_id: int) -> list[AuthPlugin]:
        names = [
            *config.get_list("l7r.auth.plugins.head"),
            *config.get_list("l7r.auth.plugins", tenant_id),
            *config.get_list("l7r.auth.plugins.tail"),
        ]
        chain: list[AuthPlugin] = []
        for name in dict.fromkeys(n.strip() for n in names if n.strip()):
            factory = self._plugins.get(name)
            if factory is None:
                raise Unauthorized(f"authentication plugin {name!r} is not known to this L7R")
            chain.append(factory())
        return chain

    def login(
        self, conn: Connection, config: Config, headers: Mapping[str, str], address: str
    ) -> Principal:
        """Authenticate a request (commits what plugins and token use wrote)."""
        blame = _Blame()
        try:
            return self._login(conn, config, headers, address, blame)
        except TooManyAttempts:
            self._on_failure("rate_limit")
            raise
        except Unauthorized:
            self._on_failure(blame.source)
            raise

    def _login(
        self,
        conn: Connection,
        config: Config,
        headers: Mapping[str, str],
        address: str,
        blame: _Blame,
    ) -> Principal:
        credentials = parse_authorization(headers.get("authorization"))
        address_key = f"addr:{address}"
        self._refuse_after(self.limiter.blocked_for(address_key))
        if not isinstance(credentials, Basic):
            blame.source = "token"
            try:
                principal = bearer_login(conn, credentials.candidates)
            except Unauthorized:
                conn.rollback()
                self._refuse_after(self.limiter.verdict(address_key, None, accepted=False))
                raise
            self._settle(conn, self.limiter.verdict(address_key, None, accepted=True))
            return principal
        login, tenant = split_login(
            credentials.login,
            separators=config.get("l7r.auth.plugin.default.separators"),
            default_tenant=config.get("l7r.auth.plugin.default.tenant"),
            case_sensitive=config.get_bool("model.user.login.case-sensitive"),
        )
        if not login:
            raise Unauthorized("an empty login is not accepted")
        if not credentials.password:
            raise Unauthorized("an empty password is not accepted")
        row = conn.execute(
            text("SELECT id, blocked FROM tenants WHERE name = :n AND id > 0"), {"n": tenant}
        ).first()
        if row is None:
            self._refuse_after(self.limiter.verdict(address_key, None, accepted=False))
            raise Unauthorized(f"unknown tenant {tenant!r}")
        tenant_id = int(row[0])
        if config.get_bool("model.user.login.case-sensitive", tenant_id) is False:
            login = login.lower()
        user_key = f"user:{tenant_id}:{login}"
        attempt = Attempt(
            login=login,
            tenant_id=tenant_id,
            tenant=tenant,
            password=credentials.password,
            address=address,
            extras=auth_extras(headers),
        )
        ctx = AuthContext(conn=conn, config=config)
        try:
            principal = self._run_chain(ctx, attempt, blame, tenant_blocked=bool(row[1]))
        except Unauthorized:
            conn.rollback()
            self._refuse_after(self.limiter.verdict(address_key, user_key, accepted=False))
            raise
        self._settle(conn, self.limiter.verdict(address_key, user_key, accepted=True))
        return principal

    def recheck(self, conn: Connection, principal: Principal) -> None:
        """Refuse a principal kept since its login (keep-alive) once its user is deleted
        or blocked, its password changed, its tenant is blocked or its token expired."""
        row = conn.execute(
            text(
                f"SELECT u.blocked, tn.blocked, {password_fp_sql('u.password')} "
                "FROM users u JOIN tenants tn ON tn.id = u.tenant_id WHERE u.id = :u"
            ),
            {"u": principal.user_id},
        ).first()
        conn.rollback()
        if row is None:
            raise Unauthorized(f"user {principal.login!r} no longer exists")
        if row[0]:
            raise Unauthorized(f"user {principal.login!r} is blocked")
        if row[1]:
            raise Unauthorized("the tenant of this user is blocked")
        if row[2] != principal.password_fp:
            raise Unauthorized("the password of this user changed: log in again")
        expires = principal.token_expires
        if expires is not None and expires <= dt.datetime.now(dt.UTC):
            raise Unauthorized("the token has expired")

    @staticmethod
    def _refuse_after(wait: float) -> None:
        if wait > 0:
            raise TooManyAttempts(f"too many failed logins: try again in {math.ceil(wait)} s")

    def _settle(self, conn: Connection, wait: float) -> None:
        """Keep what a successful login wrote, unless its address is held back."""
        if wait > 0:
            conn.rollback()
            self._refuse_after(wait)
        conn.commit()

    def _run_chain(
        self, ctx: AuthContext, attempt: Attempt, blame: _Blame, *, tenant_blocked: bool
    ) -> Principal:
        chain = self.chain(ctx.config, attempt.tenant_id)
        for plugin in chain:
            blame.source = plugin.name
            plugin.split_password(ctx, attempt)
        accepted = False
        for plugin in chain:
            blame.source = plugin.name
            if plugin.authenticate(ctx, attempt):
                accepted = True
                break
        if not accepted:  # every plugin declined: put down to all of them, in order
            blame.source = "+".join(plugin.name for plugin in chain) or "request"
            raise Unauthorized("wrong login or password")
        for plugin in chain:
            blame.source = plugin.name
            plugin.after_authenticate(ctx, attempt)
        blame.source = "account"
        user = ctx.conn.execute(
            text(
                f"SELECT id, blocked, {password_fp_sql('password')} FROM users "
                "WHERE tenant_id = :t AND login = :l"
            ),
            {"t": attempt.tenant_id, "l": attempt.login},
        ).first()
        if user is None:
            raise Unauthorized(
                f"user {attempt.login!r} authenticated but is not registered in tenant "
                f"{attempt.tenant!r}"
            )
        if user[1]:
            raise Unauthorized(f"user {attempt.login!r} is blocked")
        if tenant_blocked:
            raise Unauthorized(f"tenant {attempt.tenant!r} is blocked")
        params = {"qvd.vm.user.name": attempt.login, **attempt.params}
        return Principal(
            user_id=int(user[0]),
            tenant_id=attempt.tenant_id,
            login=attempt.login,
            params=params,
            password_fp=str(user[2]),
        )
