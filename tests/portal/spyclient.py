"""Spy helpers for tests against the real portal: an administrator and its tickets in
the database (as the API's ``vm_spy`` issues them), the WAT launcher's form post, and
a blocking WebSocket client (wsproto over TLS) that sends a first text frame (the
ticket) as ``spy.js`` does, then reads until the socket ends."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from qvd.db.spytickets import issue
from qvd.di.testbed import Xvfb
from qvd.vma.auth import SecretStore
from qvd.vma.server import make_server
from tests.l7r.test_vnc import X11vncService
from tests.portal.conftest import PortalLab
from tests.portal.wsclient import WsOutcome, open_ws
from tests.vma.test_simplerpc import RecordingAgent

__all__ = ["SpyOutcome", "add_admin", "new_ticket", "post_ticket", "spied_vm", "spy_ws"]


def add_admin(engine: Engine, name: str = "ops", tenant_id: int = 1) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                text("INSERT INTO administrators (tenant_id, name) VALUES (:t, :n) RETURNING id"),
                {"t": tenant_id, "n": name},
            ).scalar_one()
        )


def new_ticket(
    engine: Engine, vm_id: int, admin_id: int, *, name: str = "ops", tenant_id: int = 1,
    interactive: bool = False,
) -> str:  # fmt: skip
    with engine.begin() as conn:
        ticket, _ = issue(
            conn, vm_id=vm_id, administrator_id=admin_id, administrator_name=name,
            tenant_id=tenant_id, interactive=interactive, address="192.0.2.1",
        )  # fmt: skip
    return ticket


def post_ticket(port: int, ticket: str, **headers: str) -> httpx.Response:
    """The WAT launcher's form post: cross-origin, no cookie."""
    with httpx.Client(verify=False, timeout=30) as client:  # noqa: S501 - self-signed node
        return client.post(
            f"https://127.0.0.1:{port}/spy",
            data={"ticket": ticket},
            headers={"origin": "https://wat.example:8443", **headers},
        )


SpyOutcome = WsOutcome


def spy_ws(
    port: int,
    first: str | bytes | None,
    *,
    origin: str | None = "",
    path: str = "/ws/spy",
    timeout: float = 60.0,
    until_ready: bool = False,
) -> WsOutcome:
    """Open ``wss://127.0.0.1:port/ws/spy`` (``Origin`` the portal's own unless given,
    no cookie), send ``first`` as ``spy.js`` does and read until the socket closes (or,
    with ``until_ready``, until ``{"ready": true}``: then close it ourselves)."""
    own = f"https://127.0.0.1:{port}"
    return open_ws(
        port, path, origin=None if origin is None else (origin or own), cookie=None,
        timeout=timeout, until_ready=until_ready, first=first,
    )  # fmt: skip


@contextlib.contextmanager
def spied_vm(lab: PortalLab, workdir: Path) -> Iterator[X11vncService]:
    """The lab's seeded VM 'running' with a VMA whose vnc_connect runs the real x11vnc
    command line on an Xvfb (tests.l7r.test_vnc's stand-in for the session runner),
    under the VM's own VMA secret. Skips without x11vnc and Xvfb."""
    if not all(shutil.which(t) for t in ("x11vnc", "Xvfb")):
        pytest.skip("needs x11vnc and Xvfb (scripts/deps-l7r.sh)")
    engine, vm_id = lab.engine, lab.seed.vm_id
    with engine.connect() as conn:
        master = conn.execute(
            text("SELECT value FROM ssl_configs WHERE key = 'vma.secret.master'")
        ).scalar_one()
    secret = hmac.new(master.encode(), f"{vm_id}:0".encode(), hashlib.sha256).hexdigest()
    secret_file = workdir / "spy-vma.secret"
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    display = Xvfb("640x480x24")
    service = X11vncService(display.display, workdir)
    server = make_server(
        "127.0.0.1", 0, RecordingAgent(), SecretStore(secret_file, environ={}), vnc=service
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE vm_runtimes SET host_id = :h, vm_state = 'running', "
                    "vm_address = '127.0.0.1', vm_vma_port = :p WHERE vm_id = :v"
                ),
                {"h": lab.seed.host_id, "p": server.server_address[1], "v": vm_id},
            )
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        for proc in service.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        display.close()
