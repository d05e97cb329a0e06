"""What a request presents to log in, read from its headers (pure).

``Authorization: Basic base64(login:password)`` with the tenant inside the login
(``user@tenant`` or ``user#tenant``), ``Authorization: Bearer base64(token)`` (the
Perl client base64-encodes the token; a raw token is accepted too), and extra
``Auth-<hex(name)>: base64(value)`` headers handed to the plugins.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from qvd.config.names import LOGIN, TENANT_NAME, shown
from qvd.l7r.errors import Unauthorized

__all__ = ["Basic", "Bearer", "auth_extras", "parse_authorization", "split_login"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Basic:
    login: str
    password: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bearer:
    """Candidate token strings (decoded and as sent): one of them is the token."""

    candidates: tuple[str, ...]


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_authorization(header: str | None) -> Basic | Bearer:
    """The credentials of an ``Authorization`` header; 401 when absent or unreadable."""
    if not header:
        raise Unauthorized("credentials are required (Authorization: Basic or Bearer)")
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        raw = _b64(value)
        if raw is None:
            raise Unauthorized("the Basic credentials are not valid base64")
        text = raw.decode("utf-8", errors="replace")
        login, sep, password = text.partition(":")
        if not sep:
            raise Unauthorized("the Basic credentials have no ':' between login and password")
        return Basic(login=login, password=password)
    if scheme == "bearer":
        value = value.strip()
        if not value:
            raise Unauthorized("the Bearer token is empty")
        decoded = _b64(value)
        candidates = [value]
        if decoded is not None:
            with contextlib.suppress(UnicodeDecodeError):
                candidates.insert(0, decoded.decode("ascii"))
        return Bearer(candidates=tuple(candidates))
    raise Unauthorized(f"unsupported authorization scheme {scheme[:20]!r}")


def auth_extras(headers: Mapping[str, str]) -> dict[str, str]:
    """``Auth-<hex(name)>: base64(value)`` headers as ``{name: value}`` (bad ones skipped)."""
    extras: dict[str, str] = {}
    for key, value in headers.items():
        if not key.startswith("auth-"):
            continue
        try:
            name = bytes.fromhex(key[5:]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        raw = _b64(value)
        if name and raw is not None:
            extras[name] = raw.decode("utf-8", errors="replace")
    return extras


def split_login(
    login: str, *, separators: str, default_tenant: str, case_sensitive: bool
) -> tuple[str, str]:
    """(login, tenant name) from ``user@tenant`` / ``user#tenant`` / ``user``; 401 when
    either breaks its rule (qvd.config.names: a login is never a path or a line of a
    configuration file). An empty login is left to the caller."""
    cut = max((login.rfind(sep) for sep in separators), default=-1) if separators else -1
    if cut >= 0:
        user, tenant = login[:cut], login[cut + 1 :]
    else:
        user, tenant = login, default_tenant
    user, tenant = user.strip(), tenant.strip()
    if not case_sensitive:
        user, tenant = user.lower(), tenant.lower()
    for rule, value in ((LOGIN, user), (TENANT_NAME, tenant)):
        if value and (why := rule.problem(value)) is not None:
            raise Unauthorized(f"{shown(value)} is not a valid {rule.kind}: {why}")
    return user, tenant
