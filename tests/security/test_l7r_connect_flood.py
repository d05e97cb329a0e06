"""Attack test: one user floods the L7R with parallel ``connect_to_vm`` to stall
every tenant's logins on the node.

On main before this fix, every request's database work and every connect flow ran in
asyncio's default executor (a handful of threads on 2 cores): 20 connects waiting
for VMs that never start took them all, and another tenant's ``list_of_vm`` waited
behind them until the flood's requests timed out.

Here the real L7R (TLS, a throwaway PostgreSQL, no HKD: the flooding user's VMs are
assigned but never start, so each connect hangs in "Waiting for VM to reach state
'running'") gets 24 parallel connects from alice, each with its own VM, and while
they are in flight carol of another tenant and bob of alice's own tenant log in and
list their VMs. The lists must be served while the admitted flood requests still
hang (the assertion is the order of events; the latency is measured and printed,
never compared with a clock). Two configurations: the default caps (most of the
flood gets 503 at once, saying which cap), and caps raised above the flood (every
connect is admitted and waits in a thread: the pools alone keep logins served).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, hash_password
from qvd.l7r import L7rServer
from qvd.l7r.limits import ConnectLimits
from tests.l7r.conftest import PASSWORD, l7r_config, seed

FLOOD = 24
VM_START = 60  # seconds a flood connect hangs (no HKD ever starts its VM)
WAIT = 45.0  # generous event waits, never a speed threshold
WAITING = b"X-QVD-VM-Info: Waiting for VM to reach state 'running'"


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _basic(login: str) -> str:
    return base64.b64encode(f"{login}:{PASSWORD}".encode()).decode()


@dataclass
class FloodConnect:
    """One of alice's connects: every response head it got, and when it ended."""

    vm_id: int
    heads: list[bytes] = field(default_factory=list)
    body: bytes = b""
    waiting: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    finished_at: float = 0.0

    @property
    def status(self) -> int | None:
        final = [h for h in self.heads if not h.startswith(b"HTTP/1.1 102 ")]
        return int(final[0].split(b" ")[1]) if final else None


@contextlib.contextmanager
def _open(port: int) -> Iterator[ssl.SSLSocket]:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        sock = _tls().wrap_socket(raw)
        with sock:
            yield sock


def _read_head(sock: ssl.SSLSocket, buffer: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in buffer:
        try:
            chunk = sock.recv(65536)
        except (OSError, TimeoutError):
            return None
        if not chunk:
            return None
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


def _run_connect(port: int, flood: FloodConnect, stop: threading.Event) -> None:
    request = (
        f"GET /qvd/connect_to_vm?id={flood.vm_id}&qvd.client.os=linux HTTP/1.1\r\n"
        f"Authorization: Basic {_basic('alice')}\r\nConnection: Upgrade\r\n"
        "Upgrade: QVD/1.0\r\n\r\n"
    ).encode()
    try:
        with _open(port) as sock:
            sock.settimeout(1.0)
            sock.sendall(request)
            buffer = bytearray()
            while not stop.is_set():
                head = _read_head(sock, buffer)
                if head is None:
                    continue  # a 1 s read timeout: still waiting (or stopped)
                flood.heads.append(head)
                if WAITING in head:
                    flood.waiting.set()
                if not head.startswith(b"HTTP/1.1 102 "):
                    flood.body = bytes(buffer)
                    return
    finally:
        flood.finished_at = time.monotonic()
        flood.finished.set()


def _list_of_vm(port: int, login: str) -> tuple[bytes, bytes, float]:
    """(head, body, seconds) of one login + list on a new TLS connection (the
    seconds count from the request's send to the whole answer)."""
    request = (
        f"GET /qvd/list_of_vm HTTP/1.1\r\nAuthorization: Basic {_basic(login)}\r\n\r\n"
    ).encode()
    with _open(port) as sock:
        started = time.monotonic()
        sock.sendall(request)
        buffer = bytearray()
        head = _read_head(sock, buffer) or b""
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
        return head, bytes(buffer), time.monotonic() - started


@dataclass
class Node:
    server: L7rServer
    limits: ConnectLimits
    alice_vms: list[int]


def _world(engine: Engine) -> list[int]:
    seed(engine)  # alice and bob (tenant 1) with a VM each, this node running
    with engine.begin() as conn:
        tenant = conn.execute(
            text("INSERT INTO tenants (name) VALUES ('acme-flood') RETURNING id")
        ).scalar_one()
        carol = conn.execute(
            text("INSERT INTO users (tenant_id, login, password) VALUES (:t, 'carol', :p) "
                 "RETURNING id"),
            {"t": tenant, "p": hash_password(PASSWORD)},
        ).scalar_one()  # fmt: skip
        osf = conn.execute(
            text("INSERT INTO osfs (tenant_id, name, memory) VALUES (:t, 'acme', 64) RETURNING id"),
            {"t": tenant},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO vms (name, user_id, osf_id) VALUES ('carol-desk', :u, :o)"),
            {"u": carol, "o": osf},
        )
        alice, alice_osf = conn.execute(
            text("SELECT u.id, v.osf_id FROM users u JOIN vms v ON v.user_id = u.id "
                 "WHERE u.login = 'alice'")
        ).one()  # fmt: skip
        conn.execute(text("UPDATE osfs SET memory = 1 WHERE id = :o"), {"o": alice_osf})
        conn.execute(
            text("UPDATE host_runtimes SET free_ram_mb = 1000000"),
        )
        return [
            conn.execute(
                text("INSERT INTO vms (name, user_id, osf_id) VALUES (:n, :u, :o) RETURNING id"),
                {"n": f"alice-flood-{i}", "u": alice, "o": alice_osf},
            ).scalar_one()
            for i in range(FLOOD)
        ]


@pytest.fixture(params=["default-caps", "caps-above-the-flood"])
def node(
    request: pytest.FixtureRequest, db: DatabaseTarget, engine: Engine, tmp_path: Path
) -> Iterator[Node]:
    vms = _world(engine)
    extra = {
        "internal.l7r.timeout.vm_start": str(VM_START),
        "internal.l7r.timeout.request": "20",
        "internal.hkd.cluster.node.timeout": "600",
    }
    if request.param == "caps-above-the-flood":
        extra |= {
            "l7r.limits.connects_per_user": str(FLOOD),
            "l7r.limits.connects_per_address": str(FLOOD),
            "l7r.limits.connect_workers": str(2 * FLOOD),
        }
    with engine.connect() as conn:
        host_id = conn.execute(text("SELECT id FROM hosts WHERE name = 'node1'")).scalar_one()
    config = l7r_config(tmp_path / "run", **extra)
    server = L7rServer(config, db, host_id, "127.0.0.1")
    server.start()
    try:
        yield Node(server, ConnectLimits.from_config(config), vms)
    finally:
        server.stop()


def test_a_connect_flood_by_one_user_does_not_stall_other_logins(node: Node) -> None:
    port = node.server.port
    limits = node.limits
    admitted = min(FLOOD, limits.per_user, limits.per_address)
    floods = [FloodConnect(vm_id) for vm_id in node.alice_vms]
    stop = threading.Event()
    pool = ThreadPoolExecutor(FLOOD + 2)
    try:
        for flood in floods:
            pool.submit(_run_connect, port, flood, stop)
        # carol (another tenant) logs in while alice's logins and connects are queued
        carol = pool.submit(_list_of_vm, port, "carol@acme-flood")
        head, body, carol_seconds = carol.result(WAIT)
        assert head.startswith(b"HTTP/1.1 200 OK"), head + body
        assert b"carol-desk" in body
        # the flood is in flight: the admitted connects hang waiting for their VMs...
        deadline = time.monotonic() + WAIT
        while sum(f.waiting.is_set() for f in floods) < admitted:
            assert time.monotonic() < deadline, [f.heads for f in floods]
            time.sleep(0.05)
        # ...and the rest were refused (503, naming the cap) without waiting for them
        while sum(f.finished.is_set() for f in floods) < FLOOD - admitted:
            assert time.monotonic() < deadline, [f.heads for f in floods]
            time.sleep(0.05)
        refused = [f for f in floods if f.finished.is_set()]
        hanging = [f for f in floods if not f.finished.is_set()]
        assert len(hanging) == admitted, [(f.vm_id, f.heads) for f in floods]
        assert all(f.status == 503 for f in refused)
        assert all(b"retry later" in f.body and b"limit is" in f.body for f in refused)
        # bob (alice's tenant) is served too, while alice's connects still hang
        head, body, bob_seconds = _list_of_vm(port, "bob")
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        assert all(not f.finished.is_set() for f in hanging)  # answered before any of them
        print(
            f"flood={FLOOD} admitted={admitted} refused={len(refused)} "
            f"carol_list_s={carol_seconds:.3f} bob_list_s={bob_seconds:.3f}"
        )
    finally:
        stop.set()
        pool.shutdown(wait=True)
