"""A small standard-library client of the VMA (used by the L7R, the HKD and tests).

    client = VmaClient("10.0.0.100", secret=b"…")
    client.ping(); client.x_start({"qvd.vm.user.name": "alice"}); client.x_state()

Calls are ``POST /vma/<method>`` with the parameters form-encoded in the body (so no
property or secret ever sits in a URL) and ``Authorization: Bearer <secret>``. Answers
are SimpleRPC bodies. Errors: ``VmaUnavailable`` (cannot connect, timeout),
``VmaAuthError`` (401), ``VmaHttpError`` (another non-200 status), ``VmaRpcError``
(the method refused; ``message`` says why); all derive from ``VmaError``.
"""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Mapping, Sequence

from qvd.vma.simplerpc import CONTENT_TYPE, RemoteError, decode_response

__all__ = [
    "DEFAULT_PORT",
    "VmaAuthError",
    "VmaClient",
    "VmaError",
    "VmaHttpError",
    "VmaRpcError",
    "VmaUnavailable",
    "call_vma",
    "parse_simplerpc",
]

DEFAULT_PORT = 3030

ParamValue = str | int | Sequence[str]


class VmaError(Exception):
    """Anything that went wrong calling a VMA."""


class VmaUnavailable(VmaError):
    """No answer: connection refused or reset (``refused``: nothing is serving there),
    or a timeout (``refused`` false: something may be there, too slow to answer)."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


class VmaHttpError(VmaError):
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        super().__init__(f"VMA answered HTTP {status}: {body[:200]!r}")


class VmaAuthError(VmaHttpError):
    """401: the secret is missing or wrong."""


class VmaRpcError(VmaError):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def parse_simplerpc(body: bytes) -> object:
    """The result of a SimpleRPC body; ``VmaRpcError`` for an error body."""
    try:
        return decode_response(body)
    except RemoteError as exc:
        raise VmaRpcError(exc.message) from None


def _encode(params: Mapping[str, ParamValue]) -> bytes:
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, str | int):
            pairs.append((key, str(value)))
        else:
            pairs.extend((key, str(v)) for v in value)
    return urllib.parse.urlencode(pairs).encode()


def call_vma(
    host: str,
    method: str,
    params: Mapping[str, ParamValue] | None = None,
    *,
    secret: bytes | str,
    port: int = DEFAULT_PORT,
    timeout: float = 4.0,
) -> object:
    """One call on a fresh connection; returns the method's result."""
    token = secret.decode() if isinstance(secret, bytes) else secret
    body = _encode(params or {})
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(
            "POST",
            f"/vma/{urllib.parse.quote(method, safe='')}",
            body=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": CONTENT_TYPE,
            },
        )
        response = conn.getresponse()
        data = response.read()
    except TimeoutError as exc:
        raise VmaUnavailable(f"{host}:{port} {method}: {exc}", refused=False) from None
    except (OSError, http.client.HTTPException) as exc:
        raise VmaUnavailable(f"{host}:{port} {method}: {exc}", refused=True) from None
    finally:
        conn.close()
    if response.status == 401:
        raise VmaAuthError(response.status, data)
    if response.status != 200:
        raise VmaHttpError(response.status, data)
    return parse_simplerpc(data)


class VmaClient:
    """Calls to one VMA, with its address, port, secret and timeout."""

    def __init__(
        self, host: str, *, secret: bytes | str, port: int = DEFAULT_PORT, timeout: float = 4.0
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._secret = secret

    def call(self, method: str, params: Mapping[str, ParamValue] | None = None) -> object:
        return call_vma(
            self.host, method, params, secret=self._secret, port=self.port, timeout=self.timeout
        )

    def ping(self) -> None:
        self.call("ping")

    def x_state(self) -> str:
        return str(self.call("x_state"))

    def x_wait(
        self, leave: tuple[str, ...] = ("provisioning", "starting"), timeout: float = 10.0
    ) -> str:
        """The X state once it is none of ``leave`` (or after ``timeout`` s, at most 30):
        one blocking call instead of polling ``x_state``."""
        result = call_vma(
            self.host, "x_wait", {"leave": ",".join(leave), "timeout": f"{timeout:g}"},
            secret=self._secret, port=self.port, timeout=self.timeout + timeout,
        )  # fmt: skip
        return str(result)

    def x_start(self, params: Mapping[str, ParamValue] | None = None) -> dict[str, object]:
        """Start or resume the X session; the result has ``x_state``, ``cookie``,
        ``display`` and ``port``."""
        result = self.call("x_start", params)
        if not isinstance(result, dict):
            raise VmaRpcError(f"unexpected x_start result {result!r}")
        return result

    def x_suspend(self) -> str:
        return str(self.call("x_suspend"))

    def x_stop(self) -> str:
        return str(self.call("x_stop"))

    def poweroff(self) -> None:
        self.call("poweroff")

    def expire(self, *, soft: str = "", hard: str = "") -> None:
        self.call("expire", {"vm.expiration.soft": soft, "vm.expiration.hard": hard})
