"""An L7R on loopback over a real PostgreSQL, with the real VMA RPC server in front of
a stand-in agent (these tests are about the L7R; real nxagent runs in test_e2e)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.config import Config
from qvd.db import DatabaseTarget, hash_password
from qvd.l7r import L7rServer
from qvd.vma.auth import SecretStore
from qvd.vma.methods import RpcError
from qvd.vma.server import make_server

PASSWORD = "secret"


@dataclass
class FakeAgent:
    """The VMA's agent side: hands out a cookie, 'listens' on ``port``."""

    port: int
    cookie: str = field(default_factory=lambda: secrets.token_hex(16))
    starts: list[dict[str, str]] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)
    fail: bool = False
    start_calls: int = 0

    def x_state(self) -> str:
        return "listening" if self.starts else "stopped"

    def x_wait(self, leave: frozenset[str], timeout: float) -> str:
        return self.x_state()

    def x_start(self, params: Mapping[str, str], peer: str) -> dict[str, object]:
        self.start_calls += 1
        if self.fail:
            raise RpcError("provisioning failed: no space left")
        self.starts.append(dict(params))
        self.peers.append(peer)
        return {"x_state": "starting", "cookie": self.cookie, "display": 100, "port": self.port}

    def x_suspend(self) -> str:
        return "suspended"

    def x_stop(self) -> str:
        return "stopped"

    def poweroff(self) -> Callable[[], None]:
        return lambda: None

    def expire(self, params: Mapping[str, str]) -> None:
        return None


class NxAgentStandIn:
    """Accepts relays, records what arrives, answers each greeting with a banner."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        got = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                if not got:
                    conn.sendall(b"NXPROXY-3.5.0-3.5.99 link=ADSL ")
                got += data
                if b"ECHO" in data:
                    conn.sendall(data)
        self.received.append(got)
        self.closed.set()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Seed:
    host_id: int
    user_id: int
    vm_id: int
    other_vm: int


def seed(engine: Engine) -> Seed:
    with engine.begin() as conn:
        host_id = conn.execute(
            text("INSERT INTO hosts (name, address) VALUES ('node1', '127.0.0.1') RETURNING id")
        ).scalar_one()
        conn.execute(
            text(
                "UPDATE host_runtimes SET state = 'running', ok_ts = now(), free_ram_mb = 4000, "
                "idle_cpu = 1, running_vms = 0 WHERE host_id = :h"
            ),
            {"h": host_id},
        )
        users = [
            conn.execute(
                text(
                    "INSERT INTO users (tenant_id, login, password) VALUES (1, :l, :p) RETURNING id"
                ),
                {"l": login, "p": hash_password(PASSWORD)},
            ).scalar_one()
            for login in ("alice", "bob")
        ]
        osf = conn.execute(
            text("INSERT INTO osfs (tenant_id, name, memory) VALUES (1, 'desk', 128) RETURNING id")
        ).scalar_one()
        vms = [
            conn.execute(
                text("INSERT INTO vms (name, user_id, osf_id) VALUES (:n, :u, :o) RETURNING id"),
                {"n": name, "u": user, "o": osf},
            ).scalar_one()
            for name, user in (("alice-desk", users[0]), ("bob-desk", users[1]))
        ]
    return Seed(host_id=host_id, user_id=users[0], vm_id=vms[0], other_vm=vms[1])


def l7r_config(run: Path, **extra: str) -> Config:
    values = {
        "nodename": "node1",
        "l7r.address": "127.0.0.1",
        "l7r.port": "0",
        "path.run": str(run),
        "internal.l7r.timeout.request": "2",
        "internal.l7r.timeout.takeover": "5",
        "internal.l7r.timeout.vm_start": "10",
        "internal.l7r.timeout.x_start": "3",
        "internal.l7r.retry.x_start": "2",
        "internal.hkd.cluster.node.timeout": "60",
    }
    values.update(extra)
    return Config().with_overrides(values, source="test")


def vma_secret_store(engine: Engine, vm_id: int, secret_file: Path) -> SecretStore:
    """The cluster's master secret as a deployment has it (a new one in ``ssl_configs``),
    and the VM's secret in ``secret_file`` by the documented rule
    HMAC-SHA256(master, "<vm_id>:<run_attempts>") (not by the L7R's code): what the
    VM's VMA authenticates the L7R with."""
    master = secrets.token_hex(32)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO ssl_configs (key, value) VALUES ('vma.secret.master', :v)"),
            {"v": master},
        )
    secret = hmac.new(master.encode(), f"{vm_id}:0".encode(), hashlib.sha256).hexdigest()
    secret_file.write_text(secret)
    os.chmod(secret_file, 0o600)
    return SecretStore(secret_file, environ={})


@dataclass
class Lab:
    server: L7rServer
    seed: Seed
    engine: Engine
    agent: FakeAgent
    nx: NxAgentStandIn

    def run_vm(self, vm_id: int) -> None:
        """The VM 'running' at 127.0.0.1 with our VMA, as the HKD would leave it."""
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE vm_runtimes SET host_id = :h, vm_state = 'running', "
                    "vm_address = '127.0.0.1', vm_vma_port = :p, vm_x_port = :x WHERE vm_id = :v"
                ),
                {"h": self.seed.host_id, "p": self.vma_port, "x": self.nx.port, "v": vm_id},
            )

    vma_port: int = 0

    def connect(self) -> ssl.SSLSocket:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        return ctx.wrap_socket(raw)


@pytest.fixture
def lab(
    db: DatabaseTarget, engine: Engine, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    """A running L7R over a seeded database; ``@pytest.mark.l7r_config(token=value)``
    adds config tokens for one test."""
    marker = request.node.get_closest_marker("l7r_config")
    extra: dict[str, str] = dict(marker.kwargs) if marker else {}
    seeded = seed(engine)
    nx = NxAgentStandIn()
    agent = FakeAgent(port=nx.port)
    store = vma_secret_store(engine, seeded.vm_id, tmp_path / "vma.secret")
    vma = make_server("127.0.0.1", 0, agent, store)
    vma_thread = threading.Thread(target=vma.serve_forever, daemon=True)
    vma_thread.start()
    server = L7rServer(l7r_config(tmp_path / "run", **extra), db, seeded.host_id, "127.0.0.1")
    server.start()
    lab = Lab(server=server, seed=seeded, engine=engine, agent=agent, nx=nx)
    lab.vma_port = int(vma.server_address[1])
    try:
        yield lab
    finally:
        server.stop()
        vma.shutdown()
        vma.server_close()
        nx.close()
