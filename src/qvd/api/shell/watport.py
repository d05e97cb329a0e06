"""The API's side of the WAT's action port (``qvd.wat.port.ActionPort``): the WAT's
logins, actions and logouts run here, through the same authentication, dispatcher,
ACLs, audit log and tenant scope as ``POST /api`` (source ``WAT`` in the audit log)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qvd.api.actions.core import ActionRequest
from qvd.api.actions.dispatch import run_action
from qvd.api.errors import ApiError, AuthError, MultipleFailures, RateLimited
from qvd.api.faces.action import end_session
from qvd.api.shell.state import AppState, Credentials
from qvd.wat.port import Answer, LoginResult, WatError

__all__ = ["ApiPort"]

SOURCE = "WAT"


def _refusal(exc: ApiError) -> WatError:
    failures: dict[int, tuple[int, str]] = {}
    if isinstance(exc, MultipleFailures):
        failures = {k: (e.code, e.message) for k, e in exc.failures.items()}
    return WatError(
        exc.message,
        exc.code,
        failures=failures,
        auth=isinstance(exc, AuthError),
        retry_after=exc.retry_after if isinstance(exc, RateLimited) else None,
    )


class ApiPort:
    """:class:`qvd.wat.port.ActionPort` over one app's :class:`AppState`."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    @property
    def multitenant(self) -> bool:
        return self._state.config.get_bool("wat.multitenant")

    def login(
        self, *, login: str, password: str, tenant: str | None, address: str | None
    ) -> LoginResult:
        creds = Credentials(
            login=login, password=password, tenant=tenant, source=SOURCE, address=address
        )
        try:
            principal = self._state.authenticate(creds, new_session=True)
        except ApiError as exc:
            raise _refusal(exc) from None
        assert principal.session_token is not None
        return LoginResult(principal.session_token, self._state.session_timeout)

    def logout(self, sid: str) -> None:
        end_session(self._state, sid)

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
        req = ActionRequest(
            action=action, filters=filters, arguments=dict(arguments or {}),
            fields=list(fields), order_by=list(order_by), limit=limit, offset=offset,
            count=count,
        )  # fmt: skip
        try:
            principal = self._state.authenticate(
                Credentials(token=sid, source=SOURCE, address=address)
            )
            result = run_action(self._state.runner, principal, req)
        except ApiError as exc:
            raise _refusal(exc) from None
        return Answer(
            rows=result.rows,
            total=result.total,
            extra=dict(result.extra),
            affected=[i for i, _ in result.affected if i is not None],
        )
