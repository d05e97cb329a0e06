"""Contract fixtures: one real API server (uvicorn, TLS) over its own PostgreSQL
database holding the test world, for a whole module; and helpers that send requests
exactly as QVD's own admin tools do (``qa4``: Mojo::UserAgent with a JSON body; the
original WAT: a body-less ``POST /api/?…`` with every argument in the query string)."""

from __future__ import annotations

import gzip
import http.client
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from qvd.api import api_endpoint
from qvd.db import make_engine
from tests.api.conftest import PASSWORD, World, build_world, running_api
from tests.conftest import create_database, drop_database


@dataclass
class Server:
    port: int
    ca: Path
    world: World
    engine: Engine

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def client(self) -> httpx.Client:
        return httpx.Client(
            verify=self.context(), base_url=f"https://127.0.0.1:{self.port}",
            follow_redirects=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def server(
    pg_cluster: Any, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    target = create_database(pg_cluster, template_db)
    engine = make_engine(target)
    try:
        world = build_world(engine)
        tmp = tmp_path_factory.mktemp("contract")
        with running_api(tmp, engine) as running:
            yield Server(running.port, api_endpoint(running.config).cert, world, engine)
    finally:
        engine.dispose()
        drop_database(pg_cluster, target)


def no_booleans(value: Any, where: str = "answer") -> None:
    """Fail if a JSON ``true``/``false`` is anywhere in ``value`` (qa4 cannot parse them)."""
    assert not isinstance(value, bool), f"{where} is a JSON boolean"
    if isinstance(value, dict):
        for k, v in value.items():
            no_booleans(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            no_booleans(v, f"{where}[{i}]")


class Qa4:
    """``qa4``'s requests, byte for byte as transcript C shows them (keys sorted,
    credentials and ``parameters.source=CLI`` in every body; one new TLS connection
    per command, reused by a command's second request)."""

    def __init__(self, server: Server, login: str, tenant: str, password: str = PASSWORD):
        self.server = server
        self.creds = {"login": login, "password": password, "tenant": tenant}

    def connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.server.port, context=self.server.context(), timeout=30
        )

    def post(
        self, conn: http.client.HTTPSConnection, body: dict[str, Any], path: str = "/api"
    ) -> dict[str, Any]:
        payload = json.dumps(
            {**self.creds, "parameters": {"source": "CLI"}, **body}, sort_keys=True,
            separators=(",", ":"),
        ).encode()  # fmt: skip
        conn.request("POST", path, body=payload, headers={
            "Accept-Encoding": "gzip", "Content-Length": str(len(payload)),
            "Content-Type": "application/json", "Host": f"127.0.0.1:{self.server.port}",
            "User-Agent": "Mojolicious (Perl)",
        })  # fmt: skip
        response = conn.getresponse()
        data = response.read()
        assert response.status == 200, data
        if response.getheader("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        answer = json.loads(data)
        assert isinstance(answer, dict)
        no_booleans(answer)
        return answer

    def command(self, body: dict[str, Any], path: str = "/api") -> dict[str, Any]:
        """A one-request command on its own connection."""
        conn = self.connection()
        try:
            return self.post(conn, body, path)
        finally:
            conn.close()

    def on_named(
        self, obj: str, name: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``qa4 <obj> name=<name> <verb>``: ① the id look-up, ② the action by ids, or
        by the original name filter when the look-up failed; both on one connection
        (asserted to be kept alive)."""
        conn = self.connection()
        try:
            lookup = self.post(conn, {
                "action": f"{obj}_get_list", "fields": ["id"], "filters": {"name": {"=": name}},
            })  # fmt: skip
            sock = conn.sock
            if lookup["status"] == 0:
                filters: dict[str, Any] = {"id": {"=": [row["id"] for row in lookup["rows"]]}}
            else:
                filters = {"name": {"=": name}}
            answer = self.post(conn, {**body, "filters": filters})
            assert sock is not None
            assert conn.sock is sock, "the connection was not kept alive"
            return lookup, answer
        finally:
            conn.close()


class Wat:
    """The original WAT's requests: ``POST <apiUrl>/api/?action=…&parameters=…&…`` with
    every argument JSON-encoded in the query string and no body; ``sid`` once logged in."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.sid: str | None = None

    @staticmethod
    def query(action: str, **args: Any) -> dict[str, str]:
        params = {"action": action, "parameters": json.dumps({"source": "WAT"})}
        for key, value in args.items():
            params[key] = value if isinstance(value, str) else json.dumps(value)
        return params

    def call(self, action: str, path: str = "/api/", **args: Any) -> dict[str, Any]:
        params = self.query(action, **args)
        if self.sid is not None and "login" not in args:
            params["sid"] = self.sid
        response = self.client.post(path, params=params)
        assert response.status_code == 200, (response.status_code, response.text)
        answer = response.json()
        assert isinstance(answer, dict)
        return answer
