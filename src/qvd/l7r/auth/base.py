"""The plugin interface of the authentication chain (reference §3.3).

A plugin may act at three points, in chain order: ``split_password`` (before any
check: TOTP takes its code off the password), ``authenticate`` (the first plugin
that answers True wins) and ``after_authenticate`` (every plugin; may refuse by
raising ``Unauthorized``, may create rows, may add auth params).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Connection

from qvd.config import Config

__all__ = ["Attempt", "AuthContext", "AuthPlugin", "Principal"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthContext:
    conn: Connection
    config: Config


@dataclass(slots=True, kw_only=True)
class Attempt:
    """One login going through the chain (plugins may change the fields)."""

    login: str
    tenant_id: int
    tenant: str
    password: str
    address: str
    extras: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    otp: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is logged in: the ``users`` row, the auth params for the VMA, the fingerprint
    of the user's stored password at login (a keep-alive connection is refused once it
    changes), and the limits of a bearer login's token (VM, expiry, single use), which a
    token minted from it inherits."""

    user_id: int
    tenant_id: int
    login: str
    params: dict[str, str] = field(default_factory=dict)
    password_fp: str = ""
    token_vm_id: int | None = None
    token_expires: dt.datetime | None = None
    token_multi_use: bool = True


class AuthPlugin:
    """Base class: every hook does nothing."""

    name = "base"

    def split_password(self, ctx: AuthContext, attempt: Attempt) -> None:
        return None

    def authenticate(self, ctx: AuthContext, attempt: Attempt) -> bool:
        return False

    def after_authenticate(self, ctx: AuthContext, attempt: Attempt) -> None:
        return None
