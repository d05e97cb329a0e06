"""A typed client of the admin API's action face (``POST /api``), over httpx.

It logs in once (``current_admin_setup`` with login, password and tenant) and sends
the session id in the JSON body afterwards, as qa4 does after ``login``; it never
puts a secret in a URL. The transport can be swapped (tests pass an in-process one).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiClient", "ApiReply", "ClientError"]


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


class ApiClient:
    """``POST /api`` calls with one login per client."""

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
    ) -> None:
        self._login = login
        self._password = password
        self._tenant = tenant
        self._sid: str | None = None
        self._source = source
        verify_arg: bool | ssl.SSLContext = verify if isinstance(verify, bool) else True
        if isinstance(verify, str):
            verify_arg = ssl.create_default_context(cafile=verify)
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/",
            verify=verify_arg,
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

    def _post(self, path: str, body: dict[str, Any]) -> ApiReply:
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the API at {self._http.base_url}: {exc}") from None
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ClientError(
                f"the API answered HTTP {response.status_code} without JSON: {response.text:.200}"
            ) from None
        return ApiReply.from_json(data)

    def _session(self) -> dict[str, Any]:
        if self._sid is None:
            if not self._login:
                return {}
            body: dict[str, Any] = {
                "action": "current_admin_setup",
                "login": self._login,
                "password": self._password or "",
                "parameters": {"source": self._source},
            }
            if self._tenant:
                body["tenant"] = self._tenant
            reply = self._post("api", body)
            if not reply.ok:
                return {"__failed__": reply}
            self._sid = str(reply.extra.get("sid") or reply.rows[0].get("sid"))
        return {"sid": self._sid}

    def action(self, action: str, **fields: Any) -> ApiReply:
        """Run one action: ``filters``, ``arguments``, ``fields``, ``order_by``,
        ``block``, ``offset`` as in the QVD contract."""
        auth = self._session()
        failed = auth.pop("__failed__", None)
        if isinstance(failed, ApiReply):
            return failed
        body = {"action": action, "parameters": {"source": self._source}, **auth}
        body.update({k: v for k, v in fields.items() if v is not None})
        return self._post("api", body)

    def info(self) -> dict[str, Any]:
        try:
            data = self._http.post("api/info", json={}).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ClientError(f"cannot read /api/info: {exc}") from None
        if not isinstance(data, dict):
            raise ClientError("/api/info did not answer a JSON object")
        return data

    def upload_di(self, path: Path, arguments: dict[str, Any]) -> ApiReply:
        """``di new`` with a local file: multipart ``/api/di/upload`` (streamed)."""
        auth = self._session()
        failed = auth.pop("__failed__", None)
        if isinstance(failed, ApiReply):
            return failed
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
        return ApiReply.from_json(response.json())
