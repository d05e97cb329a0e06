"""A typed client of the admin API's action face (``POST /api``), over httpx.

It logs in once (``current_admin_setup`` with login, password and tenant) and sends
the session id in the JSON body afterwards; it never puts a secret in a URL. When the
session expires (3300) it logs in again once with the credentials it holds, and
:meth:`ApiClient.logout` ends the session (``/api/logout``). Missing credentials can
be asked for on first use (``ask``: the interactive prompt). The transport can be
swapped (tests pass an in-process or a recording one).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiClient", "ApiReply", "ClientError", "Credentials"]

SESSION_EXPIRED = 3300


class ClientError(Exception):
    """The API could not be reached or did not answer JSON."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiReply:
    """What ``POST /api`` answered."""

    status: int
    message: str = ""
    total: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 0

    @classmethod
    def from_json(cls, data: Any) -> ApiReply:
        if not isinstance(data, dict) or not isinstance(data.get("status"), int):
            raise ClientError(f"the API answered something that is not a QVD reply: {data!r:.200}")
        known = {"status", "message", "total", "rows", "failures"}
        return cls(
            status=data["status"],
            message=str(data.get("message") or ""),
            total=data.get("total"),
            rows=list(data.get("rows") or []),
            failures=dict(data.get("failures") or {}),
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """Who logs in: ``tenant`` is the tenant's name (``*`` for superadmins)."""

    login: str | None = None
    password: str | None = None
    tenant: str | None = None

    @property
    def complete(self) -> bool:
        return bool(self.login) and self.password is not None


AskCredentials = Callable[[Credentials], Credentials]


class ApiClient:
    """``POST /api`` calls with one login per session."""

    def __init__(
        self,
        url: str,
        *,
        login: str | None = None,
        password: str | None = None,
        tenant: str | None = None,
        verify: bool | str = True,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        source: str = "CLI",
        ask: AskCredentials | None = None,
    ) -> None:
        self.credentials = Credentials(login=login, password=password, tenant=tenant)
        self.me: dict[str, Any] = {}
        self._sid: str | None = None
        self._source = source
        self.ask = ask
        self._info: dict[str, Any] | None = None
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/",
            verify=ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "qvd-qa/1"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def logged_in(self) -> bool:
        return self._sid is not None

    def set_credentials(self, credentials: Credentials) -> None:
        """Use these from now on (the current session, if any, is left as it is)."""
        self.credentials = credentials
        self._sid = None
        self.me = {}

    def _reply(self, response: httpx.Response) -> ApiReply:
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            if response.status_code == 404:
                raise ClientError(
                    f"the API has no {response.request.url.path} (HTTP 404): is it a QVD API?"
                ) from None
            raise ClientError(
                f"the API answered HTTP {response.status_code} without JSON: {response.text:.200}"
            ) from None
        return ApiReply.from_json(data)

    def _post(self, path: str, body: dict[str, Any]) -> ApiReply:
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the API at {self._http.base_url}: {exc}") from None
        return self._reply(response)

    def login(self) -> ApiReply:
        """Open a session with the credentials held (asking for missing ones)."""
        creds = self.credentials
        if not creds.complete and self.ask is not None:
            creds = self.ask(creds)
            self.credentials = creds
        body: dict[str, Any] = {
            "action": "current_admin_setup",
            "login": creds.login or "",
            "password": creds.password or "",
            "parameters": {"source": self._source},
        }
        if creds.tenant:
            body["tenant"] = creds.tenant
        reply = self._post("api", body)
        if reply.ok:
            row = reply.rows[0] if reply.rows else {}
            self._sid = str(reply.extra.get("sid") or row.get("sid"))
            self.me = {k: v for k, v in row.items() if k not in ("sid", "acls", "views")}
        elif self.ask is not None:  # ask again next time rather than repeat a wrong one
            self.credentials = replace(creds, password=None)
        return reply

    def _session(self) -> dict[str, Any] | ApiReply:
        """The session field of a request body, or the failed login's reply."""
        if self._sid is None:
            if not self.credentials.login and self.ask is None:
                return {}
            reply = self.login()
            if not reply.ok:
                return reply
        return {"sid": self._sid}

    def action(self, action: str, **fields: Any) -> ApiReply:
        """Run one action: ``filters``, ``arguments``, ``fields``, ``order_by``,
        ``block``, ``offset`` as in the QVD contract."""
        return self._with_session(lambda auth: self._action("api", action, auth, fields))

    def _action(
        self, path: str, action: str, auth: dict[str, Any], fields: dict[str, Any]
    ) -> ApiReply:
        body = {"action": action, "parameters": {"source": self._source}, **auth}
        body.update({k: v for k, v in fields.items() if v is not None})
        return self._post(path, body)

    def _with_session(self, call: Callable[[dict[str, Any]], ApiReply]) -> ApiReply:
        auth = self._session()
        if isinstance(auth, ApiReply):
            return auth
        reply = call(auth)
        if reply.status == SESSION_EXPIRED and "sid" in auth and self.credentials.complete:
            self._sid = None
            auth = self._session()
            if isinstance(auth, ApiReply):
                return auth
            reply = call(auth)
        return reply

    def logout(self) -> ApiReply:
        """End the session (``/api/logout``); the password is forgotten, so the next
        call logs in again only if it is given again."""
        sid, self._sid = self._sid, None
        self.me = {}
        self.credentials = replace(self.credentials, password=None)
        if sid is None:
            return ApiReply(status=0, message="not logged in")
        return self._post("api/logout", {"sid": sid})

    def info(self) -> dict[str, Any]:
        """``/api/info`` (no login needed), read once."""
        if self._info is None:
            try:
                response = self._http.post("api/info", json={})
                data = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise ClientError(f"cannot read /api/info: {exc}") from None
            if not isinstance(data, dict):
                raise ClientError("/api/info did not answer a JSON object")
            self._info = data
        return self._info

    def upload_di(self, path: Path, arguments: dict[str, Any]) -> ApiReply:
        """``di new`` with a local file: multipart ``/api/di/upload`` (streamed)."""

        def call(auth: dict[str, Any]) -> ApiReply:
            try:
                with open(path, "rb") as f:
                    response = self._http.post(
                        "api/di/upload",
                        data={"action": "di_create", "arguments": json.dumps(arguments), **auth},
                        files={"file": (path.name, f, "application/octet-stream")},
                        timeout=None,
                    )
            except OSError as exc:
                raise ClientError(f"cannot read {path}: {exc}") from None
            except httpx.HTTPError as exc:
                raise ClientError(f"upload failed: {exc}") from None
            return self._reply(response)

        return self._with_session(call)

    def create_di_from(self, route: str, arguments: dict[str, Any]) -> ApiReply:
        """``di new`` from the API server's staging folder: ``/api/di/<route>``."""
        return self._with_session(
            lambda auth: self._action(
                f"api/di/{route}", "di_create", auth, {"arguments": arguments}
            )
        )
