"""Restart-only tokens apply at the next start of a daemon: a global row for the API's
port (set through the API) is where a newly started API listens, over its file's."""

from __future__ import annotations

import socket
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.api import create_app
from tests.api.asgi import asgi_client
from tests.api.conftest import Api, add_admin, api_config, running_api
from tests.conftest import free_port


def test_a_port_row_applies_when_the_api_starts(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, session.begin():
        add_admin(session, "root", 0)
    port = free_port()
    with asgi_client(create_app(api_config(tmp_path), engine)) as client:
        api = Api(client)
        listed = api.act("config_get", sid=api.login("root"), filters={"key": "api.port"})
        assert listed["rows"][0]["applies"] == "restart"
        r = api.act(
            "config_set", sid=api.login("root"), arguments={"key": "api.port", "value": str(port)}
        )
        assert r["status"] == 0, r
    with running_api(tmp_path, engine) as started:
        assert started.port != port  # its file names another port ...
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # ... it listens on the row's
