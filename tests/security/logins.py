"""Helpers of the login attack tests: requests to the real L7R from chosen loopback
source addresses (127.0.0.0/8 is all loopback on Linux, so an "attacker" and a "user"
can come from different addresses), and a real admin API over TLS."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from qvd.api import api_endpoint
from tests.api.conftest import running_api
from tests.l7r.conftest import Lab
from tests.l7r.ldap_fixture import Reply
from tests.l7r.test_server import final_response

__all__ = ["AdminApi", "KeepAlive", "admin_api", "request"]


class KeepAlive:
    """One TLS connection to the L7R (a ``Lab`` or a port) from ``source``, for several
    requests."""

    def __init__(self, lab: Lab | int, source: str = "127.0.0.1") -> None:
        port = lab if isinstance(lab, int) else lab.server.port
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
        self.sock = context.wrap_socket(raw)
        self.buffer = bytearray()

    def get(self, target: str, authorization: str | None = None, *, upgrade: bool = False) -> Reply:
        lines = [f"GET {target} HTTP/1.1"]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        if upgrade:
            lines += ["Connection: Upgrade", "Upgrade: QVD/1.0"]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head, body, infos = final_response(self.sock, self.buffer)
        return Reply(status=int(head[9:12]), head=head, body=body, infos=tuple(infos))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request(
    lab: Lab,
    target: str,
    authorization: str | None = None,
    *,
    source: str = "127.0.0.1",
    upgrade: bool = False,
) -> Reply:
    """One request on a new TLS connection from ``source``."""
    with KeepAlive(lab, source) as conn:
        return conn.get(target, authorization, upgrade=upgrade)


class AdminApi:
    """The real admin API (uvicorn, TLS) seen from one source address."""

    def __init__(self, url: str, cert: Path) -> None:
        self.url = url
        self.context = ssl.create_default_context(cafile=str(cert))

    def act(self, action: str, *, source: str = "127.0.0.1", **body: Any) -> dict[str, Any]:
        transport = httpx.HTTPTransport(verify=self.context, local_address=source)
        with httpx.Client(transport=transport, base_url=self.url) as client:
            response = client.post("/api", json={"action": action, **body})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


@contextmanager
def admin_api(tmp: Path, engine: Engine) -> Iterator[AdminApi]:
    with running_api(tmp, engine) as running:
        endpoint = api_endpoint(running.config)
        yield AdminApi(endpoint.url, endpoint.cert)
