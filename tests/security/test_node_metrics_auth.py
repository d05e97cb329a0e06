"""Attack: anybody who reaches a node reads its ``/metrics`` (how many desktops run
there, how often logins fail, how many bytes its users move), or reads it in clear.

The guards: the node's ``/metrics`` (``qvd.node.metrics``) speaks TLS only; with
``metrics.token`` it answers only requests carrying it (compared in constant time);
without one it listens on loopback only and refuses to start on any other address.
The real listener serves a real HKD registry on the address of a bridge this test
makes; the scraper is a process in a network namespace on that bridge (a machine on
the network), or a client on loopback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from qvd.config import Config
from qvd.di.testbed import Bridge, NetnsPeer
from qvd.hkd.metrics import HkdMetrics
from qvd.node.daemons import node_services
from qvd.node.metrics import MetricsListenerError, NodeMetricsServer
from tests.conftest import free_port
from tests.hkd.scrape import scrape

pytestmark = pytest.mark.timeout(180)

TOKEN = "node-scrape-Tok3n-under-test-91ad"
# a scraper on another machine: one GET over TLS, prints the status and the body as JSON
SCRAPER = """
import json, ssl, sys, urllib.error, urllib.request
url, auth = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
try:
    with urllib.request.urlopen(request, context=context, timeout=20) as reply:
        print(json.dumps([reply.status, reply.read().decode()]))
except urllib.error.HTTPError as refused:
    print(json.dumps([refused.code, refused.read().decode()]))
except OSError as failed:
    print(json.dumps([0, str(failed)]))
"""


def node_config(tmp: Path, address: str, token: str = "") -> Config:
    return Config().with_overrides(
        {
            "nodename": "node1",
            "path.run": str(tmp / f"run-{address}-{bool(token)}"),
            "metrics.port": str(free_port()),
            "metrics.address": address,
            "metrics.token": token,
        },
        source="test",
    )


@contextmanager
def listener(config: Config, host_address: str) -> Iterator[int]:
    """The node's real /metrics listener over an HKD registry with figures in it."""
    metrics = HkdMetrics()
    metrics.vm_state(1, "running")
    server = NodeMetricsServer(config, metrics.registry, host_address)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def scrape_from(peer: NetnsPeer, url: str, auth: str = "") -> tuple[int, str]:
    done = subprocess.run(
        ["ip", "netns", "exec", peer.name, sys.executable, "-c", SCRAPER, url, auth],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status, body = json.loads(done.stdout)
    return int(status), str(body)


def test_a_token_guards_the_nodes_metrics_on_the_network(
    network: tuple[Bridge, NetnsPeer], tmp_path: Path
) -> None:
    bridge, peer = network
    config = node_config(tmp_path, bridge.host_address, TOKEN)
    with listener(config, bridge.host_address) as port:
        url = f"https://{bridge.host_address}:{port}/metrics"
        for auth in ("", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
            status, body = scrape_from(peer, url, auth)
            assert status == 401, (auth, body)
            assert "qvd_" not in body
            assert TOKEN not in body
        status, body = scrape_from(peer, url, f"Bearer {TOKEN}")
        assert status == 200, body
        assert 'qvd_node_vms{state="running"} 1.0' in body
        assert TOKEN not in body


def test_without_a_token_the_node_refuses_a_public_address(tmp_path: Path) -> None:
    for address in ("0.0.0.0", "*", "10.213.7.1", "::"):  # noqa: S104 (what is refused)
        config = node_config(tmp_path, address)
        with pytest.raises(MetricsListenerError, match=r"set metrics\.token"):
            node_services(config, metrics=HkdMetrics())
        with pytest.raises(MetricsListenerError, match=r"set metrics\.token"):
            NodeMetricsServer(config, HkdMetrics().registry, "10.213.7.1").start()


def test_without_a_token_only_loopback_is_served(
    network: tuple[Bridge, NetnsPeer], tmp_path: Path
) -> None:
    bridge, peer = network
    config = node_config(tmp_path, "127.0.0.1")
    with listener(config, bridge.host_address) as port:
        local = scrape(port)
        assert local.status == 200
        assert local.value("qvd_node_vms", state="running") == 1
        # from the network there is nothing to reach: the listener is on loopback only
        status, body = scrape_from(peer, f"https://{bridge.host_address}:{port}/metrics")
        assert status == 0, body


def test_no_metrics_in_clear(tmp_path: Path) -> None:
    config = node_config(tmp_path, "127.0.0.1", TOKEN)
    with listener(config, "127.0.0.1") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            request = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            plain.sendall(request.encode())
            answer = b""
            try:
                while chunk := plain.recv(65536):
                    answer += chunk
            except OSError:
                pass
        assert b"qvd_node" not in answer
        assert not answer.startswith(b"HTTP/1.1 200")
        assert scrape(port, TOKEN).status == 200  # the same request over TLS is served
