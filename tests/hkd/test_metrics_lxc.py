"""A real node's ``/metrics``: the HKD with the LXC backend hosting the L7R and the
node's TLS metrics listener (composed as ``qvd hkd`` does), a real desktop started by
a client's ``connect_to_vm`` through the real L7R, bytes relayed to the real nxagent,
and the node scraped over TLS with its token, the exposition parsed by
prometheus_client's parser."""

from __future__ import annotations

import base64
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.hkd.daemon import Hkd
from qvd.hkd.metrics import HkdMetrics
from qvd.node.daemons import node_services
from tests.conftest import free_port
from tests.e2e.node import set_password
from tests.hkd.conftest import add_host
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.hkd.scrape import Scrape, scrape

pytestmark = pytest.mark.timeout(600)

TOKEN = secrets.token_urlsafe(24)
PASSWORD = "m3trics-pw"
GREETING = b"NXPROXY-3.5.0-3.5.99 stream=default,data=default "


def connect_request(login: str, password: str, vm_id: int) -> bytes:
    basic = base64.b64encode(f"{login}:{password}".encode()).decode()
    return (
        f"GET /qvd/connect_to_vm?id={vm_id}&qvd.client.os=linux&qvd.client.geometry=800x600"
        "&qvd.client.link=lan&qvd.client.keyboard=pc105/us&qvd.client.fullscreen=0 HTTP/1.1\r\n"
        f"Authorization: Basic {basic}\r\nConnection: Upgrade\r\nUpgrade: QVD/1.0\r\n\r\n"
    ).encode()


def open_tls(port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=120))


def final_head(sock: ssl.SSLSocket) -> bytes:
    """The head of the first response that is not a 102 (bytes after it are left)."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"the L7R closed; had {buffer!r}"
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 102 "):
            return head


def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_real_session_shows_in_the_nodes_metrics(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    add_host(engine, lxc_node.name, lxc_node.host_address)
    metrics_port = free_port()
    config = lxc_node.config(
        **{"l7r.address": "127.0.0.1", "l7r.port": "0", "l7r.portal.enable": "0",
           "metrics.port": str(metrics_port), "metrics.token": TOKEN}
    )  # fmt: skip
    metrics = HkdMetrics()
    hkd = Hkd(
        config, target=db, services=node_services(config, db, metrics=metrics), metrics=metrics
    )
    hkd.start()
    try:
        l7r_port = int(hkd.services[0].port)  # type: ignore[attr-defined]
        vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1)
        login = set_password(engine, vm_id, PASSWORD)

        def node() -> Scrape:
            done = scrape(metrics_port, TOKEN)
            assert done.status == 200, done.body
            return done

        before = node()
        assert before.value("qvd_node_vm_start_seconds_count") == 0
        assert before.value("qvd_l7r_connects_total", result="ok") == 0

        # a wrong password: refused, counted against the plugin that refused it
        with open_tls(l7r_port) as refused:
            refused.sendall(connect_request(login, "wrong", vm_id))
            assert final_head(refused).startswith(b"HTTP/1.1 401")

        # the right one: the VM starts (cold), the session is relayed to nxagent
        with open_tls(l7r_port) as client:
            client.sendall(connect_request(login, PASSWORD, vm_id))
            head = final_head(client)
            assert head.startswith(b"HTTP/1.1 101"), head
            during = node()
            assert during.value("qvd_l7r_sessions") == 1
            assert during.value("qvd_node_vms", state="running") == 1
            client.sendall(GREETING)
            client.settimeout(30)
            answer = client.recv(4096)  # nxagent's own greeting
            assert answer, "nxagent said nothing to the NX greeting"
            eventually(
                lambda: node().value("qvd_l7r_relay_bytes_total", direction="out") >= len(answer),
                "the desktop's bytes counted",
            )
        after = node()
        assert after.value("qvd_node_vm_start_seconds_count") >= 1
        assert after.value("qvd_node_vm_backend_start_seconds_count") >= 1
        assert after.value("qvd_node_claims_total", kind="start", result="won") >= 1
        assert after.value("qvd_l7r_connects_total", result="ok") == 1
        assert after.value("qvd_l7r_connects_total", result="auth_failed") == 1
        assert after.value("qvd_l7r_auth_failures_total", plugin="default") == 1
        assert after.value("qvd_l7r_relay_bytes_total", direction="in") >= len(GREETING)
        eventually(lambda: node().value("qvd_l7r_sessions") == 0, "the session ended")
    finally:
        hkd.stop()
