"""The L7R over TLS on loopback, fed the exact bytes of real clients
(real-clients.md), answering from a real PostgreSQL and a real VMA RPC server."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time

import pytest
from sqlalchemy import text

from tests.l7r.conftest import Lab
from tests.l7r.test_wire import A1, A2, B1, B2, GREETING

BASIC = "Basic " + base64.b64encode(b"alice:secret").decode()


def swap_ids(data: bytes, vm_id: int) -> bytes:
    return data.replace(b"YWxpY2U6c2VjcmV0", BASIC[6:].encode()).replace(
        b"id=10", f"id={vm_id}".encode()
    )


def read_response(sock: ssl.SSLSocket, buffer: bytearray) -> tuple[bytes, bytes]:
    """(head, body) of one response; 1xx have no body."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed; had {bytes(buffer)!r}"
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(buffer) < length:
        buffer += sock.recv(65536)
    body = bytes(buffer[:length])
    del buffer[:length]
    return head, body


def final_response(sock: ssl.SSLSocket, buffer: bytearray) -> tuple[bytes, bytes, list[bytes]]:
    """(head, body) of the first response that is not a 102, and the X-QVD-VM-Info of
    each 102 before it."""
    infos: list[bytes] = []
    head, body = read_response(sock, buffer)
    while head.startswith(b"HTTP/1.1 102 "):
        infos.append(head.split(b": ", 1)[1].strip())
        head, body = read_response(sock, buffer)
    return head, body, infos


def settled_session(lab: Lab, vm_id: int) -> tuple[str, int | None]:
    """(user_state, l7r_host_id) of the VM once it is ``disconnected`` (or after 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        with lab.engine.begin() as conn:
            state, holder = conn.execute(
                text("SELECT user_state, l7r_host_id FROM vm_runtimes WHERE vm_id = :v"),
                {"v": vm_id},
            ).one()
        if state == "disconnected" or time.monotonic() >= deadline:
            return state, holder
        time.sleep(0.05)


def test_alpn_offers_http11_only(lab: Lab) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", lab.server.port))) as s:
        assert s.selected_alpn_protocol() == "http/1.1"


def test_ping_and_unknown_path(lab: Lab) -> None:
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(b"GET /qvd/ping HTTP/1.1\n\nGET /nope HTTP/1.1\n\n")
        head, body = read_response(s, buf)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body == b"I am alive!"
        head, body = read_response(s, buf)
        assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
        assert body == b"no such resource: /nope\n"


def test_curl_list_exact_bytes(lab: Lab) -> None:
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A1, lab.seed.vm_id))
        head, body = read_response(s, buf)
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    assert json.loads(body) == [
        {"id": lab.seed.vm_id, "state": "stopped", "name": "alice-desk", "blocked": 0,
         "is_application": False}
    ]  # fmt: skip
    assert b'"blocked": 0' in body  # an integer, never a JSON boolean


def test_401_and_error_codes_keep_alive(lab: Lab) -> None:
    bad = A1.replace(b"YWxpY2U6c2VjcmV0", base64.b64encode(b"alice:wrong"))
    vm = lab.seed.vm_id
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(bad)
        head, body = read_response(s, buf)
        assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        assert b'WWW-Authenticate: Basic realm="QVD"\r\n' in head
        assert body == b"wrong login or password\n"
        cases = [
            (A2.replace(b"Connection: Upgrade\n", b""), b"426 Upgrade Required"),
            (A2.replace(b"id=10&", b""), b"422 Unprocessable Entity"),
            (A2.replace(b"id=10", b"id=10&evil=1"), b"403 Forbidden"),
            (A2.replace(b"id=10", b"id=999999"), b"404 Not Found"),
            (A2.replace(b"id=10", f"id={lab.seed.other_vm}".encode()), b"404 Not Found"),
        ]
        for request, status in cases:
            s.sendall(swap_ids(request, vm))
            head, body = read_response(s, buf)
            assert head.startswith(b"HTTP/1.1 " + status + b"\r\n"), (status, head, body)
            assert body.strip(), "every error says why"
        with lab.engine.begin() as conn:
            conn.execute(text("UPDATE vm_runtimes SET blocked = true WHERE vm_id = :v"), {"v": vm})
        s.sendall(swap_ids(B2, vm))
        head, body = read_response(s, buf)
        assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert b"offline for maintenance" in body


def test_perl_list_then_connect_on_one_connection_relays_with_cookie(lab: Lab) -> None:
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(B1, vm))
        head, body = read_response(s, buf)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        s.sendall(swap_ids(B2, vm))
        infos: list[bytes] = []
        while True:
            head, body = read_response(s, buf)
            if not head.startswith(b"HTTP/1.1 102 Processing\r\nX-QVD-VM-Info: "):
                break
            assert body == b""
            infos.append(head.split(b": ", 1)[1].strip())
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\nX-QVD-Slave-Key: ")
        assert head.count(b"\r\n") == 3, "the 101 carries only the slave key"
        assert buf == b"", "nothing follows the 101 in the same write"
        assert infos[0] == f"Session acquired for VM_ID: {vm}".encode()
        assert infos[-1] == b"Connection established"
        with lab.engine.begin() as conn:
            state = conn.execute(
                text("SELECT user_state FROM vm_runtimes WHERE vm_id = :v"), {"v": vm}
            ).scalar()
        assert state == "connected"
        s.sendall(GREETING)
        assert s.recv(100).startswith(b"NXPROXY-3.5.0-3.5.99 link=ADSL")
        s.sendall(b"ECHO-payload")
        assert s.recv(100) == b"ECHO-payload"
    assert lab.nx.closed.wait(5)
    cookie = lab.agent.cookie.encode()
    assert lab.nx.received[0].startswith(
        b"NXPROXY-3.5.0-3.5.99 cookie=" + cookie + b",stream=default,data=default "
    )
    params = lab.agent.starts[0]
    assert params["qvd.client.keyboard"] == "pc105/es"
    assert params["qvd.vm.user.name"] == "alice"
    assert len(params["qvd.slave.key"]) == 64
    assert settled_session(lab, vm) == ("disconnected", None)


def test_takeover_aborts_the_first_session(lab: Lab) -> None:
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    first = lab.connect()
    buf1 = bytearray()
    first.sendall(swap_ids(A2, vm))
    head, _, _ = final_response(first, buf1)
    assert head.startswith(b"HTTP/1.1 101")
    first.sendall(GREETING)
    first.recv(100)
    with lab.connect() as second:
        buf2 = bytearray()
        second.sendall(swap_ids(A2, vm))
        head, _, infos = final_response(second, buf2)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert any(b"Aborting contending session" in i for i in infos)
    first.settimeout(5)
    assert first.recv(100) == b"", "the first client was cut off"
    first.close()


def test_connect_failure_says_why_and_frees_the_session(lab: Lab) -> None:
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    lab.agent.fail = True
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A2, vm))
        head, body, _ = final_response(s, buf)
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"provisioning failed: no space left" in body
    with lab.engine.begin() as conn:
        assert (
            conn.execute(
                text("SELECT user_state FROM vm_runtimes WHERE vm_id = :v"), {"v": vm}
            ).scalar()
            == "disconnected"
        )


def test_the_connect_flow_reads_the_databases_config_rows(lab: Lab) -> None:
    """A global configs row (here: x_start tries, 2 in the lab's file configuration)
    governs the connect flow, not only logins."""
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    lab.agent.fail = True
    with lab.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO configs (tenant_id, key, value) VALUES (-1, :k, '3')"),
            {"k": "internal.l7r.retry.x_start"},
        )
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A2, vm))
        head, _, _ = final_response(s, buf)
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert lab.agent.start_calls == 3


def test_stopped_vm_gets_a_host_and_a_start_command(lab: Lab) -> None:
    vm = lab.seed.vm_id
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A2, vm))
        infos: list[bytes] = []
        head, _ = read_response(s, buf)
        while head.startswith(b"HTTP/1.1 102") and len(infos) < 4:
            infos.append(head.split(b": ", 1)[1].strip())
            if len(infos) < 4:
                head, _ = read_response(s, buf)
        assert infos == [
            f"Session acquired for VM_ID: {vm}".encode(),
            f"Assigning VM {vm} to host".encode(),
            b"Starting virtual machine",
            b"Waiting for VM to reach state 'running'",
        ]
        with lab.engine.begin() as conn:
            row = conn.execute(
                text("SELECT host_id, vm_cmd, user_state FROM vm_runtimes WHERE vm_id = :v"),
                {"v": vm},
            ).one()
        assert tuple(row) == (lab.seed.host_id, "start", "connecting")
        lab.run_vm(vm)  # what the HKD does; the NOTIFY wakes the waiting connect
        head, _, _ = final_response(s, buf)
        assert head.startswith(b"HTTP/1.1 101")


def test_a_vm_caught_stopping_is_started_again_once_stopped(lab: Lab) -> None:
    vm = lab.seed.vm_id
    with lab.engine.begin() as conn:
        conn.execute(
            text("UPDATE vm_runtimes SET host_id = :h, vm_state = 'stopping' WHERE vm_id = :v"),
            {"h": lab.seed.host_id, "v": vm},
        )
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A2, vm))
        head, _ = read_response(s, buf)  # "Session acquired"; then it waits for the stop
        assert head.startswith(b"HTTP/1.1 102")
        with lab.engine.begin() as conn:  # what the HKD does at the end of a stop
            conn.execute(
                text(
                    "UPDATE vm_runtimes SET vm_state = 'stopped', host_id = NULL WHERE vm_id = :v"
                ),
                {"v": vm},
            )
        infos = []
        head, _ = read_response(s, buf)
        while head.startswith(b"HTTP/1.1 102") and b"Waiting for VM" not in head:
            infos.append(head.split(b": ", 1)[1].strip())
            head, _ = read_response(s, buf)
        assert infos == [f"Assigning VM {vm} to host".encode(), b"Starting virtual machine"]
        lab.run_vm(vm)
        head, _, _ = final_response(s, buf)
        assert head.startswith(b"HTTP/1.1 101")


def test_bearer_tokens_single_and_multi_use(lab: Lab) -> None:
    from qvd.l7r.auth import issue_token

    with lab.engine.begin() as conn:
        single = issue_token(conn, lab.seed.user_id, multi_use=False)
        multi = issue_token(conn, lab.seed.user_id, multi_use=True)
    for token, uses in ((single, ["200", "401"]), (multi, ["200", "200"])):
        header = "Bearer " + base64.b64encode(token.encode()).decode()
        for expected in uses:
            with lab.connect() as s:
                buf = bytearray()
                s.sendall(
                    f"GET /qvd/list_of_vm HTTP/1.1\r\nAuthorization: {header}\r\n\r\n".encode()
                )
                head, _ = read_response(s, buf)
            assert head.startswith(f"HTTP/1.1 {expected} ".encode()), (token == single, head)
    with lab.engine.begin() as conn:
        stored = conn.execute(text("SELECT token_sha256 FROM user_tokens")).scalars().all()
    assert multi not in stored
    assert all(len(d) == 64 for d in stored)


def test_failed_logins_are_rate_limited(lab: Lab) -> None:
    bad = "Basic " + base64.b64encode(b"bob:nope").decode()
    good = "Basic " + base64.b64encode(b"bob:secret").decode()
    statuses = []
    bodies = []
    with lab.connect() as s:
        buf = bytearray()
        for header in [bad] * 11 + [good]:
            s.sendall(f"GET /qvd/list_of_vm HTTP/1.1\r\nAuthorization: {header}\r\n\r\n".encode())
            head, body = read_response(s, buf)
            statuses.append(head[9:12])
            bodies.append(body)
    assert statuses == [b"401"] * 12
    assert b"too many failed logins" in bodies[-1]
    assert b"too many failed logins" in bodies[10]


def test_slow_loris_is_cut_off(lab: Lab) -> None:
    with lab.connect() as s:
        s.sendall(b"GET /qvd/ping HTTP/1.1\r\nX-Slow: ")
        s.settimeout(60)  # a server that never cuts the head off fails here
        data = s.recv(1000)
        assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert s.recv(1000) == b""


def test_a_client_leaving_right_after_the_101_never_reaches_the_agent(lab: Lab) -> None:
    """nxagent ends its X session when a connection closes before the NX greeting, so
    the L7R dials it only once the client has spoken; the next connect works."""
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A2, vm))
        head, _, _ = final_response(s, buf)
        assert head.startswith(b"HTTP/1.1 101")
    assert settled_session(lab, vm)[0] == "disconnected"
    assert lab.nx.received == [], "the agent was dialled for a client that said nothing"
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A2, vm))
        head, _, _ = final_response(s, buf)
        assert head.startswith(b"HTTP/1.1 101")
        s.sendall(GREETING + b"ECHO-again")
        got = b""
        while b"ECHO-again" not in got:
            chunk = s.recv(100)
            assert chunk
            got += chunk
    assert lab.nx.closed.wait(5)
    assert len(lab.nx.received) == 1


@pytest.mark.l7r_config(**{"l7r.use_ssl": "0"})
def test_without_tls_the_l7r_listens_in_plain_http(lab: Lab) -> None:
    """``l7r.use_ssl = 0`` (behind a TLS terminator): the listener starts and answers."""
    with socket.create_connection(("127.0.0.1", lab.server.port), timeout=10) as s:
        buf = bytearray()
        s.sendall(b"GET /qvd/ping HTTP/1.1\r\n\r\n")
        head, body = read_response(s, buf)  # type: ignore[arg-type]
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body == b"I am alive!"
