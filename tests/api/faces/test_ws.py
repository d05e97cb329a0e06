"""``/api/ws`` over the real TLS server (uvicorn + wsproto): authentication like
``POST /api``, pushes driven by NOTIFY (and by polling for objects without a channel),
tenant isolation, refusal of mutating actions, AKN keep-alives and one LISTEN
connection per process.

Refusals arrive as a QVD error body in a text message, then the socket closes with
4401 (authentication), 4403 (forbidden or mutating action) or 4400 (bad request)."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from qvd.api import api_endpoint, create_app
from qvd.api.faces import notifyhub, ws
from tests.api.conftest import PASSWORD, Api, World, api_config, running_api


class Closed(Exception):
    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"closed with {code}: {reason}")
        self.code = code
        self.reason = reason


class WsClient:
    """A small blocking WebSocket client (wsproto over a TLS socket)."""

    def __init__(
        self, port: int, context: ssl.SSLContext, target: str, headers: Sequence[tuple[str, str]]
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.texts: deque[str] = deque()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._parts: list[str] = []
        self._accepted = False
        self._eof = False
        extra = [(k.encode(), v.encode()) for k, v in headers]
        self.sock.sendall(
            self.conn.send(Request(host="127.0.0.1", target=target, extra_headers=extra))
        )
        deadline = time.monotonic() + 10
        while not self._accepted:
            if not self._pump(deadline):
                raise TimeoutError("no WebSocket handshake")

    def _pump(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self._eof:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        self._eof = not data
        self.conn.receive_data(data or None)
        for event in self.conn.events():
            if isinstance(event, AcceptConnection):
                self._accepted = True
            elif isinstance(event, RejectConnection):
                raise AssertionError(f"handshake rejected with HTTP {event.status_code}")
            elif isinstance(event, TextMessage):
                self._parts.append(event.data)
                if event.message_finished:
                    self.texts.append("".join(self._parts))
                    self._parts = []
            elif isinstance(event, Ping):
                self.sock.sendall(self.conn.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code, self.close_reason = event.code, event.reason
                with suppress(Exception):
                    self.sock.sendall(self.conn.send(event.response()))
        return True

    def recv(self, timeout: float = 5.0) -> str:
        """The next text message; :class:`Closed` once closed, TimeoutError if none."""
        deadline = time.monotonic() + timeout
        while not self.texts:
            if self.close_code is not None or self._eof:
                raise Closed(self.close_code, self.close_reason)
            if not self._pump(deadline):
                if self.close_code is not None or self._eof:
                    raise Closed(self.close_code, self.close_reason)
                raise TimeoutError(f"no message within {timeout} s")
        return self.texts.popleft()

    def recv_json(self, timeout: float = 5.0) -> dict[str, Any]:
        value = json.loads(self.recv(timeout))
        assert isinstance(value, dict)
        return value

    def quiet(self, seconds: float) -> None:
        """Assert that nothing arrives for ``seconds``."""
        try:
            got = self.recv(seconds)
        except TimeoutError:
            return
        pytest.fail(f"unexpected message: {got[:300]}")

    def wait_closed(self, timeout: float = 5.0) -> int | None:
        deadline = time.monotonic() + timeout
        while self.close_code is None and not self._eof:
            if not self._pump(deadline):
                break
        return self.close_code

    def send(self, message: str) -> None:
        self.sock.sendall(self.conn.send(TextMessage(data=message)))

    def close(self) -> None:
        with suppress(OSError):
            if self.conn.state is ConnectionState.OPEN:
                self.sock.sendall(self.conn.send(CloseConnection(code=1000)))
                self.wait_closed(2)
        self.sock.close()


@dataclass
class Server:
    port: int
    context: ssl.SSLContext
    api: Api
    world: World
    engine: Engine
    sockets: list[WsClient]

    def connect(
        self,
        sid: str | None,
        *,
        how: str = "bearer",
        query: dict[str, Any] | None = None,
    ) -> WsClient:
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (query or {}).items()}
        headers: list[tuple[str, str]] = []
        if sid is not None and how == "bearer":
            headers.append(("Authorization", f"Bearer {sid}"))
        elif sid is not None and how == "cookie":
            headers.append(("Cookie", f"sid={sid}"))
        elif sid is not None and how == "query":
            params["sid"] = sid
        target = ws.WS_PATH + ("?" + urllib.parse.urlencode(params) if params else "")
        client = WsClient(self.port, self.context, target, headers)
        self.sockets.append(client)
        return client

    def admin(self, label: str) -> str:
        return self.api.login(f"admin{label}", f"tenant{label}")

    def listening_again(self) -> bool:
        """The LISTEN connection is there and has run its LISTEN statement."""
        with self.engine.connect() as conn:
            return bool(
                conn.scalar(
                    text(
                        "SELECT count(*) = 1 FROM pg_stat_activity "
                        "WHERE application_name = 'qvd-api-listen' "
                        "AND datname = current_database() "
                        "AND state = 'idle' AND query LIKE 'LISTEN %'"
                    )
                )
            )

    def listen_connections(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = 'qvd-api-listen' AND datname = current_database()"
                    )
                )
                or 0
            )


@pytest.fixture
def server(tmp_path: Path, api_engine: Engine, world: World) -> Iterator[Server]:
    sockets: list[WsClient] = []
    with running_api(tmp_path, api_engine, tmp_path / "c") as running:
        endpoint = api_endpoint(running.config)
        context = ssl.create_default_context(cafile=str(endpoint.cert))
        try:
            with httpx.Client(verify=context, base_url=endpoint.url) as client:
                yield Server(running.port, context, Api(client), world, api_engine, sockets)
        finally:
            for socket_client in sockets:
                socket_client.close()


VM_QUERY = {
    "action": "vm_get_list",
    "fields": ["id", "name", "blocked", "state", "host_id"],
    "order_by": {"field": ["id"], "order": "-asc"},
}


def _ids(body: dict[str, Any]) -> list[int]:
    return [row["id"] for row in body["rows"]]


def test_wss_pushes_the_vm_list_again_when_a_vm_changes(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no re-run by timer within the test: a push can only come from the NOTIFY
    monkeypatch.setattr(ws, "POLL", 3600.0)
    monkeypatch.setattr(ws, "SAFETY_POLL", 3600.0)
    w = server.world
    sock = server.connect(server.admin("A"), query=VM_QUERY)
    first = sock.recv_json()
    assert first["status"] == 0, first
    assert first["message"] == "Successful completion"
    assert first["total"] == 1
    assert first["rows"] == [
        {"id": w.vms["A"], "name": "vmA", "blocked": False, "state": "stopped", "host_id": None}
    ]

    root = server.api.login("root")  # another session changes the VM
    r = server.api.act(
        "vm_update", sid=root, filters={"id": w.vms["A"]}, arguments={"blocked": True}
    )
    assert r["status"] == 0, r
    pushed = sock.recv_json(timeout=60)
    assert pushed["rows"][0]["blocked"] == 1
    assert {k: v for k, v in pushed.items() if k != "rows"} == {
        k: v for k, v in first.items() if k != "rows"
    }

    server.api.act("vm_update", sid=root, filters={"id": w.vms["A"]}, arguments={"blocked": False})
    assert sock.recv_json(timeout=3)["rows"][0]["blocked"] == 0
    r = server.api.act("vm_start", sid=server.admin("A"), filters={"id": w.vms["A"]})
    assert r["status"] == 0, r
    assert sock.recv_json(timeout=3)["rows"][0]["host_id"] == w.host
    sock.quiet(0.5)  # one change, one push (identical results are not pushed again)


@pytest.mark.slow  # waits for timers (polls, keep-alives, the config re-read)
def test_other_tenants_changes_push_nothing_and_leak_nothing(server: Server) -> None:
    w = server.world
    sock_a = server.connect(server.admin("A"), query=VM_QUERY)
    sock_b = server.connect(server.admin("B"), how="cookie", query=VM_QUERY)
    sock_root = server.connect(server.api.login("root"), query=VM_QUERY)
    assert _ids(sock_a.recv_json()) == [w.vms["A"]]
    assert _ids(sock_b.recv_json()) == [w.vms["B"]]
    assert _ids(sock_root.recv_json()) == [w.vms["A"], w.vms["B"]]
    assert server.listen_connections() == 1  # one LISTEN for every socket

    root = server.api.login("root")
    server.api.act("vm_update", sid=root, filters={"id": w.vms["B"]}, arguments={"blocked": True})
    b = sock_b.recv_json(timeout=3)
    assert _ids(b) == [w.vms["B"]]
    assert b["rows"][0]["blocked"] == 1
    assert sock_root.recv_json(timeout=3)["rows"][1]["blocked"] == 1
    sock_a.quiet(2.5)

    server.api.act("vm_update", sid=root, filters={"id": w.vms["A"]}, arguments={"blocked": True})
    a = sock_a.recv_json(timeout=3)
    assert _ids(a) == [w.vms["A"]]
    assert "vmB" not in json.dumps(a)
    sock_b.quiet(0.5)


@pytest.mark.parametrize("how", ["query", "first-message"])
def test_mutating_actions_are_refused(server: Server, how: str) -> None:
    w = server.world
    request = {"action": "vm_start", "filters": {"id": w.vms["A"]}}
    if how == "query":
        sock = server.connect(server.admin("A"), query=request)
    else:
        sock = server.connect(server.admin("A"))
        sock.send(json.dumps(request))
    refusal = sock.recv_json()
    assert refusal["status"] == 4210
    assert "read-only" in refusal["message"]
    assert sock.wait_closed() == ws.CLOSE_FORBIDDEN
    r = server.api.act("vm_get_list", sid=server.admin("A"), fields=["host_id"])
    assert r["rows"] == [{"host_id": None}]  # nothing was started


@pytest.mark.parametrize(
    ("sid", "status"),
    [(None, 3100), ("not-a-session", 3300)],
)
def test_bad_sessions_are_refused(server: Server, sid: str | None, status: int) -> None:
    sock = server.connect(sid, how="query", query=VM_QUERY)
    refusal = sock.recv_json()
    assert refusal["status"] == status
    assert sock.wait_closed() == ws.CLOSE_UNAUTHENTICATED


def test_bad_requests_are_refused(server: Server) -> None:
    sock = server.connect(server.admin("A"), query={"action": "vm_explode"})
    assert sock.recv_json()["status"] == 4100
    assert sock.wait_closed() == ws.CLOSE_BAD_REQUEST
    sock = server.connect(server.admin("A"), query={**VM_QUERY, "fields": ["nope"]})
    assert sock.recv_json()["status"] == 6250
    assert sock.wait_closed() == ws.CLOSE_BAD_REQUEST
    sock = server.connect(server.admin("A"))
    sock.send("not json")
    assert sock.recv_json()["status"] == 6100
    assert sock.wait_closed() == ws.CLOSE_BAD_REQUEST


def test_the_session_in_the_query_and_the_request_in_the_first_message(server: Server) -> None:
    sock = server.connect(server.admin("A"), how="query")
    sock.send(json.dumps({**VM_QUERY, "fields": ["name"]}))
    assert sock.recv_json()["rows"] == [{"name": "vmA"}]


def test_logging_out_closes_the_socket_at_the_next_change(server: Server) -> None:
    w = server.world
    sid = server.admin("A")
    sock = server.connect(sid, query=VM_QUERY)
    sock.recv_json()
    r = server.api.client.post("/api/logout", headers={"Authorization": f"Bearer {sid}"})
    assert r.json()["status"] == 0
    root = server.api.login("root")
    server.api.act("vm_update", sid=root, filters={"id": w.vms["A"]}, arguments={"blocked": True})
    refusal = sock.recv_json(timeout=3)
    assert refusal["status"] == 3300
    assert sock.wait_closed() == ws.CLOSE_UNAUTHENTICATED


@pytest.mark.slow  # waits for timers (polls, keep-alives, the config re-read)
def test_pushes_do_not_keep_an_unattended_session_alive(server: Server) -> None:
    """Re-runs are not the administrator's doing: the session expires on time and the
    socket is closed at the next change after that."""
    w = server.world
    r = server.api.act("current_admin_setup", login="adminA", password=PASSWORD, tenant="tenantA")
    sid = r["sid"]
    sock = server.connect(sid, query=VM_QUERY)
    sock.recv_json()
    digest = hashlib.sha256(sid.encode()).hexdigest()
    with server.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE api_sessions SET last_used = now() - interval '10 minutes', "
                "expires = now() + interval '4 seconds' WHERE token_sha256 = :d"
            ),
            {"d": digest},
        )
    root = server.api.login("root")
    blocked = False
    statuses: list[int] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and 3300 not in statuses:
        blocked = not blocked
        r = server.api.act(
            "vm_update", sid=root, filters={"id": w.vms["A"]}, arguments={"blocked": blocked}
        )
        assert r["status"] == 0, r
        statuses.append(sock.recv_json(timeout=3)["status"])
    assert statuses[0] == 0
    assert statuses[-1] == 3300, statuses
    assert sock.wait_closed() == ws.CLOSE_UNAUTHENTICATED


@pytest.mark.slow  # waits for timers (polls, keep-alives, the config re-read)
def test_objects_without_a_channel_are_polled(server: Server) -> None:
    """The audit log has no trigger: the socket re-runs every 2 s and pushes only
    when the result changed."""
    root = server.api.login("root")
    query = {"action": "log_get_list", "fields": ["action"], "order_by": {"field": ["id"]}}
    sock = server.connect(root, query=query)
    before = sock.recv_json()["total"]
    sock.quiet(2.5)  # polled, unchanged: nothing pushed
    server.api.act(
        "vm_update", sid=root, filters={"id": server.world.vms["A"]}, arguments={"blocked": True}
    )
    after = sock.recv_json(timeout=3)
    assert after["total"] == before + 1
    assert after["rows"][-1]["action"] == "vm_update"


@pytest.mark.slow  # waits for timers (polls, keep-alives, the config re-read)
def test_akn_after_client_silence(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws, "KEEPALIVE", 0.6)
    sock = server.connect(server.admin("A"), query=VM_QUERY)
    sock.recv_json()
    started = time.monotonic()
    assert sock.recv(timeout=2) == "AKN"
    assert time.monotonic() - started >= 0.5
    for _ in range(4):  # the client's keep-alives push the AKN back
        time.sleep(0.3)
        sock.send("ping")
    sock.quiet(0.3)
    assert sock.recv(timeout=2) == "AKN"


def test_the_listen_connection_ends_after_the_last_socket(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifyhub, "LINGER", 0.2)
    sock = server.connect(server.admin("A"), query=VM_QUERY)
    sock.recv_json()
    assert server.listen_connections() == 1
    sock.close()
    deadline = time.monotonic() + 5
    while server.listen_connections() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.listen_connections() == 0
    again = server.connect(server.admin("A"), query=VM_QUERY)
    assert again.recv_json()["status"] == 0
    assert server.listen_connections() == 1


def test_a_lost_listen_connection_is_made_again(server: Server) -> None:
    """While LISTEN is down the socket polls every 2 s; once it is back, every socket
    runs its action again (notifications sent meanwhile are lost)."""
    w = server.world
    sock = server.connect(server.admin("A"), query=VM_QUERY)
    sock.recv_json()
    with server.engine.connect() as conn:
        killed = conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'qvd-api-listen' AND datname = current_database()"
            )
        )
    assert killed == 1
    root = server.api.login("root")
    server.api.act("vm_update", sid=root, filters={"id": w.vms["A"]}, arguments={"blocked": True})
    assert sock.recv_json(timeout=4)["rows"][0]["blocked"] == 1
    deadline = time.monotonic() + 60
    while not server.listening_again() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.listen_connections() == 1
    assert server.listening_again()  # its LISTEN statement has run
    server.api.act("vm_update", sid=root, filters={"id": w.vms["A"]}, arguments={"blocked": False})
    assert sock.recv_json(timeout=3)["rows"][0]["blocked"] == 0


def test_stopping_the_server_closes_open_sockets(
    tmp_path: Path, api_engine: Engine, world: World
) -> None:
    with running_api(tmp_path, api_engine) as running:
        endpoint = api_endpoint(running.config)
        context = ssl.create_default_context(cafile=str(endpoint.cert))
        with httpx.Client(verify=context, base_url=endpoint.url) as client:
            sid = Api(client).login("adminA", "tenantA")
        sock = WsClient(running.port, context, ws.WS_PATH + "?action=vm_get_list",
                        [("Authorization", f"Bearer {sid}")])  # fmt: skip
        assert sock.recv_json()["status"] == 0
        running.stop.set()
        assert sock.wait_closed() == 1012  # "service restart"
        sock.close()  # (the server waits for the client's TLS close)
        # the socket's task ended: nothing holds the server (it has no graceful timeout)
        running.thread.join(60)
        assert not running.thread.is_alive()


def test_session_ids_are_scrubbed_from_uvicorn_log_lines(
    tmp_path: Path, api_engine: Engine
) -> None:
    """uvicorn logs WebSocket paths with their query string (at INFO)."""
    create_app(api_config(tmp_path), api_engine)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("uvicorn.error")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning('%s - "WebSocket %s" 403', "127.0.0.1:1", "/api/ws?action=x&sid=SECRET")
    finally:
        logger.removeHandler(handler)
    assert records == ['127.0.0.1:1 - "WebSocket /api/ws?action=x&sid=***" 403']


@pytest.mark.parametrize(
    ("line", "scrubbed"),
    [
        ("POST /api/?action=x&login=root&password=pw&tenant=*",
         "POST /api/?action=x&login=***&password=***&tenant=*"),
        ("/api/?pass%77ord=pw&SID=s&x=1", "/api/?pass%77ord=***&SID=***&x=1"),
        ('"GET /api/ws?sid=abc HTTP/1.1" 101', '"GET /api/ws?sid=*** HTTP/1.1" 101'),
        ("no query here: password=pw", "no query here: password=pw"),
        ("/api/?action=vm_get_list&filters={\"name\":\"x\"}",
         "/api/?action=vm_get_list&filters={\"name\":\"x\"}"),
    ],
)  # fmt: skip
def test_credentials_are_cut_from_urls(line: str, scrubbed: str) -> None:
    assert ws.scrub_url(line) == scrubbed
