"""``ldap``: the password is checked by an LDAP bind (ldap3), per-tenant settings.

Settings (family ``auth.ldap.*``, per tenant): ``host`` (URI, e.g.
``ldap://10.0.0.5:389``), either ``userbindpattern`` (direct bind as the pattern
with ``%u`` = the login escaped as a DN value) or search-then-bind: ``base``,
``filter`` (``(uid=%u)``, the login escaped as a filter value), ``scope`` (``base``
as in QVD, or ``one``/``sub``), ``deref`` (``never``), with an optional
``binddn``/``bindpass`` for the search (anonymous otherwise); exactly one entry must
match. Sets ``qvd.vm.user.uid``/``gid`` (uidNumber/gidNumber),
``qvd.vm.user.ldap.name``/``.home``; ``name.normalize=1`` makes the login the LDAP
uid, ``home.set=1`` sets ``qvd.vm.user.home``. ``timeout`` bounds each operation.
Every connection is closed whatever happens (failed binds and connects included).
"""

from __future__ import annotations

import contextlib
import math
import socket
import warnings
from collections.abc import Iterator
from typing import Any

with warnings.catch_warnings():  # pyasn1 (under ldap3) warns about its own old names
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3  # type: ignore[import-untyped]
    from ldap3.core.exceptions import LDAPException  # type: ignore[import-untyped]
    from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]
    from ldap3.utils.dn import escape_rdn  # type: ignore[import-untyped]

from qvd.config.names import LOGIN, shown
from qvd.l7r.auth.base import Attempt, AuthContext, AuthPlugin
from qvd.l7r.errors import Unauthorized

__all__ = ["LdapPlugin"]

_SCOPES = {"base": ldap3.BASE, "one": ldap3.LEVEL, "sub": ldap3.SUBTREE}
_DEREF = {"never": ldap3.DEREF_NEVER, "search": ldap3.DEREF_SEARCH,
          "find": ldap3.DEREF_BASE, "always": ldap3.DEREF_ALWAYS}  # fmt: skip
_ATTRS = ["uid", "uidNumber", "gidNumber", "homeDirectory"]


@contextlib.contextmanager
def _connection(
    server: ldap3.Server, user: str | None, password: str | None, timeout: float
) -> Iterator[ldap3.Connection]:
    """A connection that is closed however the block ends: a failed bind included, and a
    failed connect (ldap3 leaves that socket open)."""
    conn = ldap3.Connection(
        server, user=user, password=password, receive_timeout=max(1, math.ceil(timeout))
    )
    try:
        yield conn
    finally:
        with contextlib.suppress(LDAPException, OSError):
            conn.unbind()
        sock = getattr(conn, "socket", None)
        if isinstance(sock, socket.socket):
            sock.close()


def _first(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else str(value)


class LdapPlugin(AuthPlugin):
    name = "ldap"

    def authenticate(self, ctx: AuthContext, attempt: Attempt) -> bool:
        def setting(key: str, default: str | None = None) -> str | None:
            value = ctx.config.raw(f"auth.ldap.{key}", attempt.tenant_id)
            return default if value is None or value == "" else value

        host = setting("host")
        if host is None:
            raise Unauthorized("LDAP authentication is enabled but auth.ldap.host is not set")
        try:
            timeout = float(setting("timeout", "5") or 5)
        except ValueError:
            raise Unauthorized("auth.ldap.timeout must be a number of seconds") from None
        server = ldap3.Server(host, connect_timeout=timeout, get_info=ldap3.NONE)
        login = attempt.login
        if not login:
            return False  # an empty name would make an anonymous bind or an empty filter
        try:
            pattern = setting("userbindpattern")
            entry: dict[str, Any] | None = None
            if pattern:
                dn = pattern.replace("%u", escape_rdn(login))
            else:
                dn, entry = self._search(server, setting, login, timeout)
            with _connection(server, dn, attempt.password, timeout) as conn:
                if not conn.bind():
                    return False
                if entry is None:
                    conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=_ATTRS)
                    entry = dict(conn.response[0]["attributes"]) if conn.response else {}
        except LDAPException as exc:
            raise Unauthorized(f"LDAP server {host} failed: {exc}") from None
        self._params(ctx, attempt, entry or {}, setting)
        return True

    def _search(self, server: ldap3.Server, setting: Any, login: str,
                timeout: float) -> tuple[str, dict[str, Any]]:  # fmt: skip
        base = setting("base")
        if base is None:
            raise Unauthorized("LDAP search needs auth.ldap.base (or set userbindpattern)")
        query = str(setting("filter", "(uid=%u)")).replace("%u", escape_filter_chars(login))
        scope = _SCOPES.get(str(setting("scope", "base")))
        if scope is None:
            raise Unauthorized("auth.ldap.scope must be base, one or sub")
        deref = _DEREF.get(str(setting("deref", "never")), ldap3.DEREF_NEVER)
        with _connection(server, setting("binddn"), setting("bindpass"), timeout) as searcher:
            if not searcher.bind():
                raise Unauthorized(f"LDAP search bind failed: {searcher.result.get('description')}")
            searcher.search(base, query, scope, dereference_aliases=deref, attributes=_ATTRS)
            found = [e for e in searcher.response or [] if e.get("type") == "searchResEntry"]
        if len(found) != 1:
            raise Unauthorized(
                f"LDAP search for {login!r} found {len(found)} entries (exactly one is needed)"
            )
        return str(found[0]["dn"]), dict(found[0]["attributes"])

    def _params(self, ctx: AuthContext, attempt: Attempt, entry: dict[str, Any],
                setting: Any) -> None:  # fmt: skip
        for attr, key in (("uidNumber", "uid"), ("gidNumber", "gid")):
            value = _first(entry, attr)
            if value:
                attempt.params[f"qvd.vm.user.{key}"] = value
        uid = _first(entry, "uid")
        home = _first(entry, "homeDirectory")
        if uid:
            attempt.params["qvd.vm.user.ldap.name"] = uid
            if setting("name.normalize") == "1":
                login = (
                    uid
                    if ctx.config.get_bool("model.user.login.case-sensitive", attempt.tenant_id)
                    else uid.lower()
                )
                # the directory is the tenant's: its uid is a login like any other
                if (why := LOGIN.problem(login)) is not None:
                    raise Unauthorized(
                        f"the directory's uid {shown(uid)} is not a valid login: {why}"
                    )
                attempt.login = login
        if home:
            attempt.params["qvd.vm.user.ldap.home"] = home
            if setting("home.set") == "1":
                attempt.params["qvd.vm.user.home"] = home
