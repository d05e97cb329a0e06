"""Attack test: credentials in URLs never leak.

The original WAT sends ``login``, ``password`` and ``sid`` in the query string of
``POST /api/?…``, so the API accepts them there. This runs the real API server
(uvicorn over TLS, access log on), sends query-string credentials with good and bad
requests (wrong password, bad JSON, unknown action and path, a percent-encoded
parameter name, a WebSocket, a malformed HTTP request), and asserts that neither the
password nor the session id appears in any captured log line (our loggers and
uvicorn's, and everything written to stdout/stderr), in the metrics, in an answer's
body or in the audit log."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from qvd.api import api_endpoint, serve
from qvd.db import make_engine
from tests.api.conftest import PASSWORD, api_config, build_world
from tests.api.faces.test_ws import Closed, WsClient
from tests.conftest import free_port

WRONG = "Wr0ng-Pa55word-Under-Test"
FORGED_SID = "forged-session-id-4b1d9e2c7a"


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Running:
    url: str
    port: int
    context: ssl.SSLContext
    engine: Engine
    logs: _Keep


@pytest.fixture
def running(db: Any, tmp_path: Path) -> Iterator[Running]:
    engine = make_engine(db)
    build_world(engine)
    port = free_port()
    config = api_config(tmp_path, **{
        "api.port": str(port), "path.api.ssl.cert": str(tmp_path / "cert.pem"),
        "path.api.ssl.key": str(tmp_path / "key.pem"),
    })  # fmt: skip
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=serve, args=(config,), kwargs={
        "engine": engine, "ready": ready, "stop": stop, "access_log": True,
    })  # fmt: skip
    thread.start()
    keep = _Keep()
    names = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "qvd")
    try:
        assert ready.wait(20)
        for name in names:  # after uvicorn configured its loggers
            logging.getLogger(name).addHandler(keep)
        endpoint = api_endpoint(config)
        context = ssl.create_default_context(cafile=str(endpoint.cert))
        yield Running(endpoint.url, port, context, engine, keep)
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(keep)
        stop.set()
        thread.join(20)
        engine.dispose()
    assert not thread.is_alive()


def _q(**params: Any) -> str:
    return urllib.parse.urlencode(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    )


def test_credentials_in_urls_reach_no_log_metric_body_or_audit(
    running: Running, capfd: pytest.CaptureFixture[str]
) -> None:
    bodies: list[str] = []
    with httpx.Client(verify=running.context, base_url=running.url) as client:

        def post(url: str) -> dict[str, Any]:
            response = client.post(url)
            bodies.append(response.text)
            client.cookies.clear()  # only what the URL carries
            return dict(response.json()) if response.headers.get(
                "content-type", "").startswith("application/json") else {}  # fmt: skip

        login = post("/api/?" + _q(action="current_admin_setup", login="root",
                                   password=PASSWORD, tenant="*"))  # fmt: skip
        assert login["status"] == 0, login
        sid = login["sid"]
        bodies.remove(bodies[0])  # the one body that must carry the sid
        assert post("/api/?" + _q(action="vm_get_list", sid=sid))["status"] == 0
        assert post("/api?" + _q(action="vm_get_list", sid=sid) + "&filters=%7Bnot")["status"] \
            == 6100  # fmt: skip
        assert post("/api/?" + _q(action="no_such_action", sid=sid))["status"] == 4100
        assert post("/api/?" + _q(action="vm_get_list", sid=sid, block="many"))["status"] == 6230
        assert post("/api/?" + _q(action="vm_get_list", sid=FORGED_SID))["status"] == 3300
        assert post("/api/?" + _q(action="vm_get_list", login="root", password=WRONG,
                                  tenant="*"))["status"] == 3200  # fmt: skip
        assert post("/api/?action=vm_get_list&login=root&pass%77ord=" + WRONG + "&tenant=*")[
            "status"] == 3200  # fmt: skip
        assert post("/api/info/?" + _q(password=PASSWORD, sid=sid))["status"] == 0
        post("/api/no/such/path?" + _q(password=PASSWORD, sid=sid))
        rest = client.get("/api/v1/vms?" + _q(sid=sid, password=PASSWORD))
        bodies.append(rest.text)
        assert rest.status_code == 401  # REST never takes a token from the URL
        for ws_sid in (sid, FORGED_SID):
            sock = WsClient(running.port, running.context,
                            "/api/ws?" + _q(action="vm_get_list", sid=ws_sid), [])  # fmt: skip
            try:
                bodies.append(sock.recv())
            finally:
                sock.close()
        sock = WsClient(running.port, running.context, "/api/ws?" + _q(
            action="vm_get_list", login="root", password=WRONG, tenant="*"), [])  # fmt: skip
        try:
            refusal = json.loads(sock.recv())
            assert (refusal["status"], refusal["rows"]) == (3200, [])
            bodies.append(json.dumps(refusal))
            with pytest.raises(Closed):
                sock.recv()
        finally:
            sock.close()
        # a request h11 refuses (no Host header), with secrets in its target
        with (
            socket.create_connection(("127.0.0.1", running.port), timeout=10) as raw,
            running.context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(f"POST /api/?password={PASSWORD}&sid={sid} HTTP/1.1\r\n\r\n".encode())
            bodies.append(tls.recv(65536).decode("latin-1"))
        metrics = client.get("/metrics").text
        logout = post("/api/logout/?" + _q(sid=sid))
        assert logout["status"] == 0
        assert post("/api/logout/?" + _q(sid=sid))["status"] == 3600

    with running.engine.connect() as conn:
        audit = "\n".join(str(tuple(r)) for r in conn.execute(text("SELECT * FROM audit_log")))
    out, err = capfd.readouterr()
    logs = "\n".join(running.logs.lines)
    # the server did log these requests: the check below is not vacuous
    assert "/api/?action=vm_get_list" in logs + out + err
    assert "sid=***" in logs + out + err
    assert "login" in audit  # failed and successful logins were audited
    for secret in (PASSWORD, WRONG, sid, FORGED_SID):
        for where, haystack in (("logs", logs), ("stdout", out), ("stderr", err),
                                ("metrics", metrics), ("audit", audit),
                                ("bodies", "\n".join(bodies))):  # fmt: skip
            assert secret not in haystack, f"{secret[:6]}… leaked into {where}"
            assert urllib.parse.quote(secret) not in haystack
