"""What the WAT needs from the API: the action port.

The WAT is a client of the API's action layer, in the same process: it logs in, runs
actions (the same catalogue, ACLs, audit log and tenant scope as ``POST /api``) and logs
out through an :class:`ActionPort`, which the API's shell implements
(``qvd.api.shell.watport``) and hands to :func:`qvd.wat.install`. The WAT imports
nothing of ``qvd.api`` or ``qvd.db`` (import-linter contracts in ``pyproject.toml``).

Answers carry real JSON types (the REST face's shape, not QVD's 0/1 booleans).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ActionPort", "Answer", "LoginResult", "WatError", "csrf_token"]


class WatError(Exception):
    """An action or a login refused: QVD's ``status`` code and the reason. ``failures``
    maps object ids to ``(status, message)`` when some objects of a multi-object action
    failed (status 1200); ``auth`` says the session is gone (log in again)."""

    def __init__(
        self,
        message: str,
        status: int,
        *,
        failures: Mapping[int, tuple[int, str]] | None = None,
        auth: bool = False,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.failures: dict[int, tuple[int, str]] = dict(failures or {})
        self.auth = auth
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful action: its rows (real JSON types), the total a list matched (None
    when not counted), what else the action said, and the objects it touched."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    affected: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A new session: its token (goes only into the HttpOnly cookie) and lifetime."""

    sid: str
    max_age: int


class ActionPort(Protocol):
    """The API as the WAT sees it."""

    @property
    def multitenant(self) -> bool:
        """Whether logins name a tenant (``wat.multitenant``)."""
        ...

    def login(
        self, *, login: str, password: str, tenant: str | None, address: str | None
    ) -> LoginResult:
        """Open a session (audited as a login, rate-limited); :class:`WatError` if refused."""
        ...

    def logout(self, sid: str) -> None:
        """End the session (no error when it had already ended)."""
        ...

    def call(
        self,
        sid: str,
        action: str,
        *,
        filters: Any = None,
        arguments: Mapping[str, Any] | None = None,
        fields: Sequence[str] = (),
        order_by: Sequence[tuple[str, bool]] = (),
        limit: int | None = None,
        offset: int = 0,
        count: bool = True,
        address: str | None = None,
    ) -> Answer:
        """Run ``action`` as the session's administrator (``order_by``: (field,
        descending) pairs); :class:`WatError` when refused (``auth`` set when the
        session is unknown or expired)."""
        ...


def csrf_token(sid: str) -> str:
    """The anti-CSRF token of the session ``sid``: derived from the secret token (which
    only the HttpOnly cookie holds), so a page can embed it and another site cannot
    guess it. Every cookie-authenticated request that changes something must send it
    (``X-CSRF-Token`` header or ``csrf`` form field); the API checks the same value."""
    digest = hmac.new(sid.encode(), b"qvd-csrf-v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
