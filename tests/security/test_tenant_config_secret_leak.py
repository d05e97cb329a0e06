"""Attack: a tenant administrator writes a configuration row that expands a node
secret, then reads it back in a login error.

Before the fix a tenant's row could refer to any token: ``auth.ldap.host =
ldap://127.0.0.1:${database.password}`` made the L7R try that "port" and answer the
login with ``LDAP server ldap://127.0.0.1:<the node's database password> failed``.
Now the real API refuses such a row (6320), a row written before is never expanded
(the L7R ignores it), and the password appears in no answer, log line or audit entry.
Real API over TLS, real L7R over TLS, real PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from qvd.api import api_endpoint, serve
from qvd.db import DatabaseTarget, make_engine
from qvd.l7r import L7rServer
from tests.api.conftest import PASSWORD, World, api_config, build_world
from tests.conftest import free_port
from tests.l7r.conftest import l7r_config
from tests.l7r.test_server import read_response

pytestmark = pytest.mark.timeout(180)

BIND_PASSWORD = "Tenant-Bind-Pw-0x5e"


def closed_port() -> str:
    """A loopback port nothing listens on: the node's database password of this test
    (digits, so that an expanded ``ldap://127.0.0.1:${database.password}`` is a valid
    URL whose connection fails on loopback, and the error carries the password)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def keep_logs() -> Iterator[_Keep]:
    keep = _Keep()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        yield keep
    finally:
        root.removeHandler(keep)
        root.setLevel(previous)


@pytest.fixture
def engine(db: DatabaseTarget) -> Iterator[Engine]:
    made = make_engine(db)
    yield made
    made.dispose()


class Admin:
    """An administrator's session on the real API's action face."""

    def __init__(self, client: httpx.Client, login: str, tenant: str, seen: list[str]) -> None:
        self.client, self.seen = client, seen
        reply = self.act("current_admin_setup", login=login, password=PASSWORD, tenant=tenant)
        assert reply["status"] == 0, reply
        self.sid = str(reply["sid"])

    def act(self, action: str, **body: Any) -> dict[str, Any]:
        if hasattr(self, "sid"):
            body["sid"] = self.sid
        response = self.client.post("/api", json={"action": action, **body})
        self.seen.append(response.text)
        data: dict[str, Any] = response.json()
        return data


def l7r_login(server: L7rServer, login: str) -> bytes:
    """``GET /qvd/list_of_vm`` with Basic credentials; the whole reply."""
    basic = base64.b64encode(f"{login}:{PASSWORD}".encode()).decode()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=20) as raw,
        context.wrap_socket(raw) as sock,
    ):
        sock.sendall(
            f"GET /qvd/list_of_vm HTTP/1.1\r\nHost: l7r\r\nAuthorization: Basic {basic}"
            "\r\n\r\n".encode()
        )
        head, body = read_response(sock, bytearray())
    return head + body


def test_a_tenant_admin_never_sees_the_node_database_password(
    db: DatabaseTarget,
    engine: Engine,
    tmp_path: Path,
    keep_logs: _Keep,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret = closed_port()
    world: World = build_world(engine)
    seen: list[str] = []  # every answer a client got

    # ---- the tenant admin, through the real API ----------------------------------------
    port = free_port()
    api_conf = api_config(tmp_path, **{
        "api.port": str(port), "database.password": secret,
        "path.api.ssl.cert": str(tmp_path / "cert.pem"),
        "path.api.ssl.key": str(tmp_path / "key.pem"),
    })  # fmt: skip
    ready, stop = threading.Event(), threading.Event()
    api = threading.Thread(
        target=serve, args=(api_conf,), kwargs={"engine": engine, "ready": ready, "stop": stop}
    )
    api.start()
    try:
        assert ready.wait(20)
        endpoint = api_endpoint(api_conf)
        verify = ssl.create_default_context(cafile=str(endpoint.cert))
        with httpx.Client(verify=verify, base_url=endpoint.url, timeout=20) as client:
            tenant_admin = Admin(client, "adminA", "tenantA", seen)
            attempts = {
                "auth.ldap.host": "ldap://127.0.0.1:${database.password}",
                "auth.ldap.base": "ou=x${database.password},dc=example",
                "auth.ldap.filter": "(uid=${path.storage.root})",
                "l7r.auth.plugins": "${internal.vm.port.vma}",
            }
            for key, value in attempts.items():
                reply = tenant_admin.act("config_set", arguments={"key": key, "value": value})
                assert reply["status"] == 6320, reply
                assert "refer" in reply["message"], reply
            listed = tenant_admin.act("config_get", filters={"key": {"~": "auth.ldap.%"}})
            assert listed["status"] == 0, listed

            # the superadmin gives tenant A a bind password and pastes the node's
            # password by mistake: the audit log keeps neither
            root = Admin(client, "root", "*", seen)
            tenant = world.tenants["A"]
            for key, value in (("auth.ldap.bindpass", BIND_PASSWORD), ("auth.ldap.binddn", secret)):
                reply = root.act(
                    "config_set", arguments={"key": key, "value": value, "tenant_id": tenant}
                )
                assert reply["status"] == 0, reply
    finally:
        stop.set()
        api.join(20)
    assert not api.is_alive()

    # ---- a row written before the rule (straight into the table) -------------------------
    with engine.begin() as conn:
        for key, value in (
            ("l7r.auth.plugins", "ldap"),
            ("auth.ldap.host", "ldap://127.0.0.1:${database.password}"),
            ("auth.ldap.timeout", "2"),
        ):
            conn.execute(
                text(
                    "INSERT INTO configs (tenant_id, key, value) VALUES (:t, :k, :v) "
                    "ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value"
                ),
                {"t": world.tenants["A"], "k": key, "v": value},
            )

    # ---- a user of that tenant logs in at the real L7R -------------------------------------
    l7r = L7rServer(
        l7r_config(
            tmp_path / "run",
            **{"database.password": secret, "model.user.login.case-sensitive": "1"},
        ),
        db,
        world.host,
        "127.0.0.1",
    )
    l7r.start()
    try:
        reply = l7r_login(l7r, "usera@tenantA")
    finally:
        l7r.stop()
    seen.append(reply.decode("utf-8", "replace"))
    assert reply.startswith(b"HTTP/1.1 401"), reply
    assert b"auth.ldap.host" in reply, reply  # the row was left out, and the answer says so

    # ---- nowhere: answers, logs, audit ------------------------------------------------------
    with engine.begin() as conn:
        audit = [
            json.dumps(row._asdict(), default=str)
            for row in conn.execute(text("SELECT * FROM audit_log"))
        ]
    captured = capfd.readouterr()
    places = {
        "answers": seen,
        "logs": keep_logs.lines,
        "stdout/stderr": [captured.out, captured.err],
        "audit log": audit,
    }
    for where, texts in places.items():
        for found in texts:
            assert secret not in found, f"the database password is in the {where}: {found}"
            assert BIND_PASSWORD not in found, f"the bind password is in the {where}: {found}"
    assert any("auth.ldap.binddn" in row for row in audit), "the audit log has the change"
