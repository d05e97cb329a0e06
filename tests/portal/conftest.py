"""The user portal attached to a real L7R (``L7rServer(..., attach=[PortalServer])``)
over TLS on loopback, on a real PostgreSQL, with the real VMA RPC server in front of the
stand-in agent of ``tests.l7r.conftest`` (the VNC part is the vnc and e2e engineers')."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.l7r import L7rServer
from qvd.l7r.core import L7rCore
from qvd.portal import PortalServer
from qvd.vma.server import make_server
from tests.l7r.conftest import (
    PASSWORD,
    FakeAgent,
    NxAgentStandIn,
    Seed,
    l7r_config,
    seed,
    vma_secret_store,
)
from tests.portal.wsclient import WsOutcome, open_ws

__all__ = ["PASSWORD", "Browser", "PortalLab", "portal_lab", "running_portal"]

COOKIE = "qvd-portal"


@dataclass
class Browser:
    """What a browser keeps for one origin: the portal's cookie (sent by hand: the
    client never guesses), and the last page's anti-CSRF token."""

    lab: PortalLab
    token: str = ""
    csrf: str = ""
    client: httpx.Client = field(
        default_factory=lambda: httpx.Client(
            verify=False,  # noqa: S501 - the node's self-signed certificate
            timeout=60,
            follow_redirects=False,
        )
    )

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.lab.port}"

    def headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self.token:
            headers["cookie"] = f"{COOKIE}={self.token}"
        return headers

    def get(self, path: str, **extra: str) -> httpx.Response:
        response = self.client.get(self.base + path, headers=self.headers(**extra))
        found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', response.text)
        if found:
            self.csrf = found.group(1)
        return response

    def post(self, path: str, data: dict[str, str] | None = None, **extra: str) -> httpx.Response:
        return self.client.post(self.base + path, data=data, headers=self.headers(**extra))

    def log_in(
        self, login: str = "alice", password: str = PASSWORD, tenant: str = ""
    ) -> httpx.Response:
        response = self.post("/login", {"login": login, "password": password, "tenant": tenant})
        if response.status_code == 303:
            self.token = response.cookies[COOKIE]
            self.get("/")  # the desktops page: its anti-CSRF token
        return response

    def act(self, vm_id: int, op: str, csrf: str | None = None) -> httpx.Response:
        token = self.csrf if csrf is None else csrf
        extra = {"x-csrf-token": token} if token else {}
        return self.post(f"/api/desktops/{vm_id}/{op}", **extra)

    def ws(self, path: str, *, origin: str | None = "", **kwargs: Any) -> WsOutcome:
        return open_ws(
            self.lab.port,
            path,
            origin=self.base if origin == "" else origin,
            cookie=f"{COOKIE}={self.token}" if self.token else None,
            **kwargs,
        )


@dataclass
class PortalLab:
    server: L7rServer
    portal: PortalServer
    seed: Seed
    engine: Engine
    agent: FakeAgent
    vma_port: int
    nx: NxAgentStandIn
    browsers: list[Browser] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.portal.port

    @property
    def core(self) -> L7rCore:
        assert self.server.core is not None
        return self.server.core

    def nx_client(self) -> ssl.SSLSocket:
        """A TLS connection to the L7R's NX port (where qvd-client connects)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        return ctx.wrap_socket(raw)

    def browser(self) -> Browser:
        browser = Browser(self)
        self.browsers.append(browser)
        return browser

    def runtime(self, vm_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = (
                conn.execute(text("SELECT * FROM vm_runtimes WHERE vm_id = :v"), {"v": vm_id})
                .mappings()
                .one()
            )
        return dict(row)

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

    def block_user(self, login: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE users SET blocked = true WHERE login = :l"), {"l": login})


class HkdStandIn:
    """Does what an HKD does with ``vm_cmd`` on this host, at once: start → running,
    stop → stopped (so that start/stop/restart can be followed in the database)."""

    def __init__(self, engine: Engine, host_id: int, vma_port: int) -> None:
        self.engine = engine
        self.host_id = host_id
        self.vma_port = vma_port
        self.done = threading.Event()
        self.seen: list[tuple[int, str]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.05):
            with self.engine.begin() as conn:
                rows = conn.execute(
                    text(
                        "SELECT vm_id, vm_cmd FROM vm_runtimes WHERE host_id = :h "
                        "AND vm_cmd IS NOT NULL FOR UPDATE"
                    ),
                    {"h": self.host_id},
                ).all()
                for vm_id, cmd in rows:
                    self.seen.append((int(vm_id), str(cmd)))
                    if cmd == "start":
                        conn.execute(
                            text(
                                "UPDATE vm_runtimes SET vm_state = 'running', vm_cmd = NULL, "
                                "vm_address = '127.0.0.1', vm_vma_port = :p WHERE vm_id = :v"
                            ),
                            {"p": self.vma_port, "v": vm_id},
                        )
                    elif cmd == "stop":
                        conn.execute(
                            text(
                                "UPDATE vm_runtimes SET vm_state = 'stopped', vm_cmd = NULL, "
                                "vm_address = NULL WHERE vm_id = :v"
                            ),
                            {"v": vm_id},
                        )

    def close(self) -> None:
        self.done.set()
        self._thread.join(10)


@contextlib.contextmanager
def running_portal(
    db: DatabaseTarget,
    engine: Engine,
    tmp_path: Path,
    extra: dict[str, str],
    *,
    vnc: Any = None,
    agent: FakeAgent | None = None,
) -> Iterator[PortalLab]:
    """A seeded database, the VMA's HTTP server (``vnc``: its ``vnc_connect`` service)
    in front of ``agent``, and an L7R with the portal attached; all stopped at the end."""
    seeded = seed(engine)
    nx = NxAgentStandIn()
    agent = agent or FakeAgent(port=nx.port)
    store = vma_secret_store(engine, seeded.vm_id, tmp_path / "vma.secret")
    vma = (
        make_server("127.0.0.1", 0, agent, store, vnc=vnc)
        if vnc
        else make_server("127.0.0.1", 0, agent, store)
    )
    vma_thread = threading.Thread(target=vma.serve_forever, daemon=True)
    vma_thread.start()
    config = l7r_config(
        tmp_path / "run",
        **{"l7r.portal.address": "127.0.0.1", "l7r.portal.port": "0", **extra},
    )
    server = L7rServer(config, db, seeded.host_id, "127.0.0.1", attach=[PortalServer])
    lab: PortalLab | None = None
    try:
        server.start()
        portal = server.attached[0]
        assert isinstance(portal, PortalServer)
        lab = PortalLab(
            server=server,
            portal=portal,
            seed=seeded,
            engine=engine,
            agent=agent,
            vma_port=int(vma.server_address[1]),
            nx=nx,
        )
        yield lab
    finally:
        for browser in lab.browsers if lab else ():
            browser.client.close()
        server.stop()
        vma.shutdown()
        vma.server_close()
        vma_thread.join(10)
        nx.close()


@pytest.fixture
def portal_lab(
    db: DatabaseTarget, engine: Engine, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[PortalLab]:
    """A running L7R with the portal attached; ``@pytest.mark.l7r_config(token=value)``
    adds config tokens for one test."""
    marker = request.node.get_closest_marker("l7r_config")
    extra: dict[str, str] = dict(marker.kwargs) if marker else {}
    with running_portal(db, engine, tmp_path, extra) as lab:
        yield lab


@pytest.fixture
def hkd(portal_lab: PortalLab) -> Iterator[HkdStandIn]:
    standin = HkdStandIn(portal_lab.engine, portal_lab.seed.host_id, portal_lab.vma_port)
    try:
        yield standin
    finally:
        standin.close()


def wait_for(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
