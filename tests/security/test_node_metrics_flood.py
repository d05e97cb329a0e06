"""Attack: open many connections to a node's ``/metrics`` port and say nothing. Each
would hold a thread of the node's process (the HKD's: the one that fences and
heartbeats) for as long as the attacker likes.

The guard (``qvd.node.metrics``): at most ``MAX_CONNECTIONS`` connections are served
at once, more are closed at once, and a silent one is dropped after ``TIMEOUT``. The
real listener; the flood is plain TCP connections that never start their TLS
handshake."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from qvd.config import Config
from qvd.hkd.metrics import HkdMetrics
from qvd.node.metrics import MAX_CONNECTIONS, THREAD_NAME, NodeMetricsServer
from tests.conftest import free_port
from tests.hkd.scrape import scrape

pytestmark = pytest.mark.timeout(120)

TOKEN = "flood-test-Tok3n-5be1"
FLOOD = 10 * MAX_CONNECTIONS


def scrape_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == THREAD_NAME)


def test_a_flood_of_silent_connections_holds_no_more_than_the_cap(tmp_path: Path) -> None:
    config = Config().with_overrides(
        {"nodename": "node1", "path.run": str(tmp_path / "run"),
         "metrics.port": str(free_port()), "metrics.token": TOKEN},
        source="test",
    )  # fmt: skip
    server = NodeMetricsServer(config, HkdMetrics().registry, "127.0.0.1")
    server.start()
    flood: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            flood.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # watched while the listener accepts them all
            assert scrape_threads() <= MAX_CONNECTIONS
            time.sleep(0.05)
        # the ones over the cap were closed by the node: they read EOF (or a reset)
        closed = 0
        for sock in flood:
            sock.settimeout(0.2)
            try:
                if sock.recv(1) == b"":
                    closed += 1
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
        assert closed >= FLOOD - MAX_CONNECTIONS
    finally:
        for sock in flood:
            sock.close()
    # the flood gone, a scrape is served again
    deadline = time.monotonic() + 30
    while scrape_threads() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert scrape(server.port, TOKEN).status == 200
    finally:
        server.stop()
