"""A fleet in miniature for the join tests: one throwaway PostgreSQL cluster reachable
over TCP on a bridge, and nodes in network namespaces plugged into that bridge, each
joined with the real ``qvd node join`` (a child process inside its namespace); and
``join_admin``, the fixture of the database tests that make join tokens."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from psycopg import sql
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, EmbeddedCluster, make_engine, upgrade
from tests.conftest import end_process, free_port, scratch_dir
from tests.hkd.conftest import wait_for
from tests.hkd.lxcnode import free_subnet
from tests.hkd.test_daemon_process import node_in_netns


@pytest.fixture
def join_admin(pg_cluster: EmbeddedCluster, db: DatabaseTarget) -> Iterator[DatabaseTarget]:
    """The test database as the cluster's superuser (who makes join tokens); the token
    roles made meanwhile are dropped afterwards."""
    target = pg_cluster.target(db.dbname, as_superuser=True)
    yield target
    with target.connect(autocommit=True) as conn:
        for (sha,) in conn.execute("SELECT token_sha256 FROM node_join_tokens").fetchall():
            role = sql.Identifier("qvd_node_" + sha[:16])
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(role))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


@dataclass
class JoinNet:
    """The bridge (the database's side at .1) and the cluster listening on it."""

    subnet: ipaddress.IPv4Network
    bridge: str
    cluster: EmbeddedCluster
    base: Path
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def db_address(self) -> str:
        return str(self.subnet.network_address + 1)

    def admin(self) -> DatabaseTarget:
        """The cluster's superuser over the socket (who makes join tokens)."""
        return self.cluster.target(as_superuser=True)

    def engine(self) -> Engine:
        return make_engine(self.cluster.target())

    def add_namespace(self, index: int) -> tuple[str, str]:
        """A network namespace on the bridge; (its name, its address)."""
        ns = f"qvdj{secrets.token_hex(3)}"
        address = str(self.subnet.network_address + 10 + index)
        outside, inside = f"qjo{secrets.token_hex(3)}", f"qji{secrets.token_hex(3)}"
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        _run("ip", "link", "set", inside, "netns", ns)
        _run("ip", "link", "set", outside, "master", self.bridge, "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add",
             f"{address}/{self.subnet.prefixlen}", "dev", inside)  # fmt: skip
        _run("ip", "netns", "exec", ns, "ip", "link", "set", inside, "up")
        return ns, address

    def qvd_in(
        self, ns: str, args: list[str], log: Path, stdin: str | None = None
    ) -> subprocess.Popen[bytes]:
        """``qvd args…`` as a node process inside ``ns`` (stdout+stderr to ``log``)."""
        env = {k: v for k, v in os.environ.items() if k not in ("QVD_CONFIG", "QVD_DATABASE_URL")}
        argv = node_in_netns(ns, self.base / f"sysfs-{ns}", [sys.executable, "-m", "qvd", *args])
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self.procs.append(proc)
        assert proc.stdin is not None
        if stdin is not None:
            proc.stdin.write(stdin.encode())
        proc.stdin.close()
        return proc


@contextlib.contextmanager
def join_net() -> Iterator[JoinNet]:
    subnet = free_subnet()
    bridge = f"qjb{secrets.token_hex(3)}"
    base = scratch_dir(f"qvd-test-join-{os.getpid()}-")
    address = str(subnet.network_address + 1)
    cluster = EmbeddedCluster(
        datadir=base / "data", socket_dir=base / "sock", port=free_port(), unsafe_fast=True,
        extra_options=["-c", f"listen_addresses=127.0.0.1,{address}"],
    )  # fmt: skip
    net = JoinNet(subnet, bridge, cluster, base)
    try:
        _run("ip", "link", "add", bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{address}/{subnet.prefixlen}", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        cluster.initialize()
        with open(cluster.datadir / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {subnet} scram-sha-256\n")
        cluster.start()
        cluster.ensure_database()
        engine = net.engine()
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield net
    finally:
        for proc in net.procs:
            end_process(proc, 60)
        for ns in net.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


def fake_node_conf(path: Path, run: Path, name: str, **extra: str) -> Path:
    """A node.conf base for a node whose desktops are the in-process fake backend (no
    LXC): what ``qvd node join`` merges its settings into."""
    values = {
        "vm.hypervisor": "fake",
        "vm.network.bridge.manage": "0",
        "path.run": str(run / name / "run"),
        "path.storage.root": str(run / name / "storage"),
        "internal.hkd.watchdog.enable": "0",
        "internal.hkd.agent.ticker.delay": "0.5",
        "l7r.port": str(free_port()),
        "l7r.portal.enable": "0",
        "vm.network.ip.start": "10.231.0.100",
        "vm.network.netmask": "16",
        **extra,
    }
    path.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def host_rows(engine: Engine) -> dict[str, tuple[str, str | None, object]]:
    """name -> (address, state, heartbeat time)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT h.name, h.address, r.state, r.ok_ts FROM hosts h "
                "LEFT JOIN host_runtimes r ON r.host_id = h.id"
            )
        )
        return {str(n): (str(a), s, t) for n, a, s, t in rows}


def wait_running(engine: Engine, name: str, log: Path, proc: subprocess.Popen[bytes]) -> None:
    def running() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the node ended: {log.read_text()}")
        row = host_rows(engine).get(name)
        return row is not None and row[1] == "running"

    wait_for(running, 90, f"node {name} running")
