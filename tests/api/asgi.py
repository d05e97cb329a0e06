"""A synchronous httpx client that calls an ASGI app in-process (no socket), through
an anyio blocking portal (what Starlette's TestClient does, without its deprecated
httpx dependency)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio.from_thread
import httpx

__all__ = ["PortalTransport", "asgi_client"]


class PortalTransport(httpx.BaseTransport):
    def __init__(self, app: Any, portal: anyio.from_thread.BlockingPortal) -> None:
        self._inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def run() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._inner.handle_async_request(inner)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        status, headers, content = self._portal.call(run)
        return httpx.Response(status, headers=headers, content=content, request=request)


@contextmanager
def asgi_client(app: Any, base_url: str = "https://testserver") -> Iterator[httpx.Client]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        httpx.Client(transport=PortalTransport(app, portal), base_url=base_url) as client,
    ):
        yield client
