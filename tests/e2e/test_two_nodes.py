"""Two nodes, each in its own network namespace, on one VM network: a client of node
B's L7R reaches the VM that node A's HKD runs (the L7R relays to the VM's address;
there is no L7R-to-L7R hop), and the NX handshake with A's real nxagent goes through."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from tests.e2e.node import set_password
from tests.hkd.conftest import host_state, runtime, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm, free_subnet
from tests.hkd.test_daemon_process import HkdProcess

pytestmark = pytest.mark.timeout(900)

CLIENT = r"""
import socket, ssl, sys
port, vm, auth = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection(("127.0.0.1", port), timeout=120)
tls = ctx.wrap_socket(raw)
tls.sendall((f"GET /qvd/connect_to_vm?id={vm}&qvd.client.os=linux&qvd.client.link=lan"
             f"&qvd.client.geometry=800x600 HTTP/1.1\nAuthorization: Basic {auth}\n"
             "Connection: Upgrade\nUpgrade: QVD/1.0\n\n").encode())
data = b""
while b"HTTP/1.1 101" not in data:
    chunk = tls.recv(65536)
    if not chunk:
        sys.exit("closed before 101: " + data.decode(errors="replace"))
    data += chunk
    if b"HTTP/1.1 4" in data or b"HTTP/1.1 5" in data:
        sys.exit("refused: " + data.decode(errors="replace"))
print("101")
tls.sendall(b"NXPROXY-3.5.0-3.5.99 stream=default,data=default ")
tls.settimeout(30)
answer = tls.recv(4096)
print(answer[:40].decode(errors="replace"))
"""


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


@pytest.fixture
def two_nodes(
    db: DatabaseTarget, engine: Engine, run_dir: Path, lxc_storage: Path
) -> Iterator[tuple[LxcNode, LxcNode, list[str], list[HkdProcess]]]:
    subnet = free_subnet()
    nodes = [
        LxcNode(name=name, root=run_dir, storage=lxc_storage, subnet=subnet,
                bridge=f"qvdh{secrets.token_hex(3)}")
        for name in ("node-a", "node-b")
    ]  # fmt: skip
    namespaces = [f"qvdt-{n.name}-{os.getpid()}" for n in nodes]
    processes: list[HkdProcess] = []
    try:
        for ns in namespaces:
            _run("ip", "netns", "add", ns)
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        with engine.begin() as conn:
            for i, node in enumerate(nodes):
                conn.execute(
                    text("INSERT INTO hosts (name, address, backend) VALUES (:n, :a, :b)"),
                    {"n": node.name, "a": str(subnet.network_address + 2 + i), "b": i == 0},
                )  # node B is a front end only: the load balancer never picks it
        yield nodes[0], nodes[1], namespaces, processes
    finally:
        for p in processes:
            p.stop()
        for node, ns in zip(nodes, namespaces, strict=True):
            node.clean_in_netns(ns)


def test_node_b_relays_to_the_vm_node_a_runs(
    db: DatabaseTarget, engine: Engine, two_nodes: tuple[LxcNode, LxcNode, list[str],
    list[HkdProcess]], test_image: Path, run_dir: Path,
) -> None:  # fmt: skip
    node_a, node_b, namespaces, processes = two_nodes
    vm_id, _ = add_lxc_vm(engine, node_a, test_image, 1)
    login = set_password(engine, vm_id, "pw")
    with engine.connect() as conn:
        hosts = {str(n): int(i) for n, i in conn.execute(text("SELECT name, id FROM hosts"))}
    for node, ns in zip((node_a, node_b), namespaces, strict=True):
        conf = node.config_file(**{"l7r.port": "8443"})
        processes.append(HkdProcess(conf, db, run_dir / f"{node.name}.log", netns=ns))
    for p in processes:
        p.wait_running()
    # one VM network: plug node B's bridge into node A's
    a_end, b_end = f"qa{secrets.token_hex(3)}", f"qb{secrets.token_hex(3)}"
    _run("ip", "link", "add", a_end, "type", "veth", "peer", "name", b_end)
    _run("ip", "link", "set", a_end, "netns", namespaces[0])
    _run("ip", "link", "set", b_end, "netns", namespaces[1])
    _run("ip", "netns", "exec", namespaces[0], "ip", "link", "set", a_end, "master",
         node_a.bridge, "up")  # fmt: skip
    _run("ip", "netns", "exec", namespaces[1], "ip", "link", "set", b_end, "master",
         node_b.bridge, "up")  # fmt: skip
    wait_for(lambda: host_state(engine, hosts["node-b"]) == "running", 30, "node B running")

    auth = base64.b64encode(f"{login}:pw".encode()).decode()
    done = subprocess.run(
        ["ip", "netns", "exec", namespaces[1], sys.executable, "-c", CLIENT, "8443",
         str(vm_id), auth],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    logs = "\n".join((run_dir / f"{n.name}.log").read_text()[-2000:] for n in (node_a, node_b))
    assert done.returncode == 0, done.stdout + done.stderr + logs
    lines = done.stdout.split("\n")
    assert lines[0] == "101", done.stdout
    assert lines[1].startswith("NXPROXY-3.5.0"), done.stdout + logs  # nxagent on node A
    assert runtime(engine, vm_id)["host_id"] == hosts["node-a"]  # the VM runs on A
    # B's L7R held the session (only B's listener was reachable from B's namespace) and
    # released it when the client went away
    wait_for(lambda: runtime(engine, vm_id)["user_state"] == "disconnected", 30, "released")
    assert runtime(engine, vm_id)["l7r_host_id"] is None
