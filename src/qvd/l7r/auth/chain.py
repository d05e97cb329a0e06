"""The authentication chain: headers in, a ``Principal`` out, or ``Unauthorized``.

Plugins run in the order ``l7r.auth.plugins.head`` + the tenant's ``l7r.auth.plugins``
+ ``l7r.auth.plugins.tail`` (= ``default``). After the chain the user must exist in
``users`` and neither it nor its tenant may be blocked. Failed logins count against
the user and the source address (``l7r.auth.rate_limit.*``).

Unknown users and wrong passwords get the same answer on purpose (telling them apart
would let anyone list the logins); every other refusal says what is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from sqlalchemy import Connection, text

from qvd.config import Config
from qvd.l7r.auth.base import Attempt, AuthContext, AuthPlugin, Principal
from qvd.l7r.auth.credentials import Basic, auth_extras, parse_authorization, split_login
from qvd.l7r.auth.tokens import bearer_login
from qvd.l7r.errors import TooManyAttempts, Unauthorized
from qvd.loginlimit import FailureLimiter

__all__ = ["Authenticator", "PluginFactory"]

PluginFactory = Callable[[], AuthPlugin]


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
    ) -> None:
        self._plugins = dict(plugins or _builtin_plugins())
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
        credentials = parse_authorization(headers.get("authorization"))
        address_key = f"addr:{address}"
        if not isinstance(credentials, Basic):
            self._check_limit(address_key)
            try:
                principal = bearer_login(conn, credentials.candidates)
            except Unauthorized:
                self.limiter.failed(address_key)
                raise
            conn.commit()
            return principal
        login, tenant = split_login(
            credentials.login,
            separators=config.get("l7r.auth.plugin.default.separators"),
            default_tenant=config.get("l7r.auth.plugin.default.tenant"),
            case_sensitive=config.get_bool("model.user.login.case-sensitive"),
        )
        row = conn.execute(
            text("SELECT id, blocked FROM tenants WHERE name = :n AND id > 0"), {"n": tenant}
        ).first()
        if row is None:
            raise Unauthorized(f"unknown tenant {tenant!r}")
        tenant_id = int(row[0])
        if config.get_bool("model.user.login.case-sensitive", tenant_id) is False:
            login = login.lower()
        user_key = f"user:{tenant_id}:{login}"
        self._check_limit(user_key, address_key)
        if not login:
            raise Unauthorized("an empty login is not accepted")
        if not credentials.password:
            raise Unauthorized("an empty password is not accepted")
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
            principal = self._run_chain(ctx, attempt, tenant_blocked=bool(row[1]))
        except Unauthorized:
            conn.rollback()
            self.limiter.failed(user_key, address_key)
            raise
        conn.commit()
        self.limiter.succeeded(user_key)
        return principal

    def _check_limit(self, *keys: str) -> None:
        wait = self.limiter.blocked_for(*keys)
        if wait > 0:
            raise TooManyAttempts(f"too many failed logins: try again in {int(wait) + 1} s")

    def _run_chain(self, ctx: AuthContext, attempt: Attempt, *, tenant_blocked: bool) -> Principal:
        chain = self.chain(ctx.config, attempt.tenant_id)
        for plugin in chain:
            plugin.split_password(ctx, attempt)
        if not any(plugin.authenticate(ctx, attempt) for plugin in chain):
            raise Unauthorized("wrong login or password")
        for plugin in chain:
            plugin.after_authenticate(ctx, attempt)
        user = ctx.conn.execute(
            text("SELECT id, blocked FROM users WHERE tenant_id = :t AND login = :l"),
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
            user_id=int(user[0]), tenant_id=attempt.tenant_id, login=attempt.login, params=params
        )
