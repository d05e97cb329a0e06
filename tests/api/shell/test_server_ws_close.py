"""Stopping the API while a WebSocket the client closed still waits for its TLS
shutdown: the server ends cleanly (uvicorn 0.54's wsproto protocol sent a 1012 close
frame on the closed connection and its thread died of LocalProtocolError)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from qvd.api import api_endpoint
from tests.api.conftest import PASSWORD, World, running_api


def _events(tls: ssl.SSLSocket, ws: WSConnection, until: type) -> list[Any]:
    seen: list[Any] = []
    while not any(isinstance(e, until) for e in seen):
        data = tls.recv(65536)
        assert data, f"the server hung up before {until.__name__}: {seen}"
        ws.receive_data(data)
        seen.extend(ws.events())
    return seen


def _wait_refused(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError("the server kept listening")


def test_stopping_with_a_socket_the_client_closed(
    tmp_path: Path, api_engine: Engine, world: World
) -> None:
    died: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = died.append
    try:
        with running_api(tmp_path, api_engine) as server:
            endpoint = api_endpoint(server.config)
            context = ssl.create_default_context(cafile=str(endpoint.cert))
            with httpx.Client(verify=context, base_url=endpoint.url) as client:
                body = {"login": "root", "password": PASSWORD, "tenant": "*"}
                sid = client.post("/api/v1/sessions", json=body).json()["sid"]
            raw = socket.create_connection(("127.0.0.1", server.port))
            tls = context.wrap_socket(raw, server_hostname="localhost")
            ws = WSConnection(ConnectionType.CLIENT)
            target = f"/api/ws?action=vm_get_list&fields={json.dumps(['id'])}"
            tls.sendall(ws.send(Request(host="localhost", target=target,
                                        extra_headers=[(b"x-qvd-sid", sid.encode())])))  # fmt: skip
            _events(tls, ws, AcceptConnection)
            first = [e for e in _events(tls, ws, TextMessage) if isinstance(e, TextMessage)]
            assert json.loads(first[0].data)["status"] == 0
            tls.sendall(ws.send(CloseConnection(code=1000)))
            _events(tls, ws, CloseConnection)  # the server answered: closed on both sides
            # the server stops while this client has not yet answered its TLS goodbye
            server.stop.set()
            _wait_refused(server.port)
            time.sleep(0.5)  # the server's shutdown reaches the connections meanwhile
            tls.close()
    finally:
        threading.excepthook = previous
    assert died == [], [f"{d.exc_type.__name__}: {d.exc_value}" for d in died]
