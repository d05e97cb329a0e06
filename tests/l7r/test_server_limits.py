"""The connect caps on the real L7R (TLS, PostgreSQL; no HKD, so a connect waits for
a VM that never starts): over the per-user cap → 503 naming it; a client that leaves
in the middle of its connect gives its place back (its flow is cancelled, its session
released) without waiting for the VM start timeout; early NX bytes still go through."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.l7r import L7rServer
from tests.l7r.conftest import PASSWORD, Lab, l7r_config, seed
from tests.l7r.test_server import read_response, swap_ids
from tests.l7r.test_wire import A2, GREETING

VM_START = 120  # far beyond the waits below: a place given back comes from the departure
WAIT = 45.0
WAITING = b"Waiting for VM to reach state 'running'"
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()


@dataclass
class Node:
    server: L7rServer
    engine: Engine
    vms: list[int]


@pytest.fixture
def node(db: DatabaseTarget, engine: Engine, tmp_path: Path) -> Iterator[Node]:
    seeded = seed(engine)
    with engine.begin() as conn:
        osf = conn.execute(
            text("SELECT osf_id FROM vms WHERE id = :v"), {"v": seeded.vm_id}
        ).scalar_one()
        vms = [seeded.vm_id] + [
            conn.execute(
                text("INSERT INTO vms (name, user_id, osf_id) VALUES (:n, :u, :o) RETURNING id"),
                {"n": f"alice-{i}", "u": seeded.user_id, "o": osf},
            ).scalar_one()
            for i in range(3)
        ]
    config = l7r_config(
        tmp_path / "run",
        **{
            "internal.l7r.timeout.vm_start": str(VM_START),
            "internal.l7r.timeout.request": "20",
            "l7r.limits.connects_per_user": "2",
            "l7r.limits.connect_workers": "4",
        },
    )
    server = L7rServer(config, db, seeded.host_id, "127.0.0.1")
    server.start()
    try:
        yield Node(server, engine, vms)
    finally:
        server.stop()


@contextlib.contextmanager
def _open(port: int) -> Iterator[ssl.SSLSocket]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        sock = ctx.wrap_socket(raw)
        with sock:
            yield sock


def _connect(sock: ssl.SSLSocket, vm_id: int, extra: bytes = b"") -> None:
    sock.sendall(
        f"GET /qvd/connect_to_vm?id={vm_id} HTTP/1.1\r\nAuthorization: Basic {BASIC}\r\n"
        "Connection: Upgrade\r\nUpgrade: QVD/1.0\r\n\r\n".encode()
        + extra
    )


def _until(sock: ssl.SSLSocket, marker: bytes) -> bytes:
    """What the server sent up to ``marker`` (or up to its first final answer)."""
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
        if b"\r\n\r\n" in data and not data.startswith(b"HTTP/1.1 102 "):
            break
    return data


def _user_state(engine: Engine, vm_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT user_state FROM vm_runtimes WHERE vm_id = :v"), {"v": vm_id}
            ).scalar_one()
        )


def test_over_the_user_cap_is_503_and_a_departed_client_gives_its_place_back(
    node: Node,
) -> None:
    port = node.server.port
    with _open(port) as first, _open(port) as second:
        _connect(first, node.vms[0])
        _connect(second, node.vms[1], extra=b"NXPROXY-early-bytes ")
        assert WAITING in _until(first, WAITING)
        assert WAITING in _until(second, WAITING)
        with _open(port) as third:
            _connect(third, node.vms[2])
            refused = _until(third, b"retry later")
        assert refused.startswith(b"HTTP/1.1 503 "), refused
        assert b"alice already has 2 connect or stop requests" in refused
        assert b"the limit is 2" in refused
        assert _user_state(node.engine, node.vms[0]) == "connecting"
    # both clients left: their flows are cancelled and their places given back
    deadline = time.monotonic() + WAIT
    while True:
        with _open(port) as again:
            _connect(again, node.vms[2])
            answer = _until(again, WAITING)
        if WAITING in answer:
            break
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert time.monotonic() < deadline, "the departed clients' places were never freed"
        time.sleep(0.2)
    while _user_state(node.engine, node.vms[0]) != "disconnected":
        assert time.monotonic() < deadline, "the departed client's session was kept"
        time.sleep(0.2)


@pytest.mark.parametrize("when", ["with-the-request", "after-the-first-102"])
def test_nx_bytes_sent_before_the_101_reach_the_agent(lab: Lab, when: str) -> None:
    """The C client sends its NX greeting right behind the upgrade request; bytes that
    arrive while the flow runs are kept (the departure watch reads them) for the relay."""
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    with lab.connect() as s:
        buf = bytearray()
        request = swap_ids(A2, vm)
        if when == "with-the-request":
            s.sendall(request + GREETING)
            head, _ = read_response(s, buf)
        else:
            s.sendall(request)
            head, _ = read_response(s, buf)
            assert head.startswith(b"HTTP/1.1 102 "), head
            s.sendall(GREETING)
        while head.startswith(b"HTTP/1.1 102 "):
            head, _ = read_response(s, buf)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert s.recv(100).startswith(b"NXPROXY-3.5.0-3.5.99 link=ADSL")
        s.sendall(b"ECHO-payload")
        assert s.recv(100) == b"ECHO-payload"
    assert lab.nx.closed.wait(WAIT)
    assert lab.nx.received[0].startswith(
        b"NXPROXY-3.5.0-3.5.99 cookie=" + lab.agent.cookie.encode() + b",stream=default"
    )
