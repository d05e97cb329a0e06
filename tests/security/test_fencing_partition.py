"""Attack test: one desktop running on two nodes after a network partition.

Node A's HKD runs in its own network namespace with real LXC; it reaches PostgreSQL
only through a veth to the host, where the cluster listens on the host side's address
(an address this test made). Node B is a second HKD (fake backend) on the same
database, over the host's unix socket. A's desktop runs; then A's packets to
PostgreSQL are dropped (nft in A's namespace: timeouts, not refusals, and A's
heartbeat call hangs). B marks A lost once A has been silent for the lost timeout and
the desktop is then started on B, as the L7R would.

The desktop must never run on both nodes: A kills it (its fence timer, or its
watchdog) strictly before B marks A lost (the database's clock, wall time) and before
B starts it (boot clock). On main, A's heartbeat hangs in the database call with no
timeout, nothing else fences, and the desktop runs on both nodes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, EmbeddedCluster, make_engine, upgrade
from qvd.hkd.backends.base import VmSpec
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd
from qvd.hkd.lease import boot_clock
from tests.conftest import free_port, scratch_dir
from tests.hkd.conftest import (  # the fixtures of real LXC nodes, used here too
    FakeVma,
    add_host,
    command,
    hkd_config,
    host_state,
    lxc_storage,  # noqa: F401
    run_dir,  # noqa: F401
    state_of,
    test_image,  # noqa: F401
    wait_for,
)
from tests.hkd.lxcnode import LxcNode, add_lxc_vm, free_subnet
from tests.hkd.test_daemon_process import HkdProcess

pytestmark = pytest.mark.timeout(600)

# one timing for the whole cluster: fence 4 s + kill 2 s + jitter < lost 8 s
_TIMING = {
    "internal.hkd.agent.ticker.timeout": "4",
    "internal.hkd.fence.kill_time": "2",
    "internal.hkd.cluster.node.timeout": "8",
    "internal.hkd.agent.ticker.delay": "0.5",
    "internal.hkd.agent.cluster_monitor.delay": "0.2",
}


@dataclass
class TimedBackend(FakeBackend):
    """Node B's backend: records when each VM's start began (boot clock)."""

    started_at: dict[int, float] = field(default_factory=dict)

    def start(self, spec: VmSpec) -> int:
        self.started_at.setdefault(spec.vm_id, boot_clock())
        return super().start(spec)


@dataclass
class Link:
    netns: str
    host_ip: str
    node_ip: str


@contextlib.contextmanager
def node_namespace(tag: str) -> Iterator[Link]:
    """A network namespace joined to the host by a veth on a free /24 (host .1, node .2)."""
    subnet: ipaddress.IPv4Network = free_subnet()
    host_ip, node_ip = str(subnet.network_address + 1), str(subnet.network_address + 2)
    ns, host_dev, ns_dev = f"qvdfp-{tag}", f"qvfh{tag}", f"qvfn{tag}"

    def sh(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True)

    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_dev, "type", "veth", "peer", "name", ns_dev)
        sh("ip", "link", "set", ns_dev, "netns", ns)
        sh("ip", "addr", "add", f"{host_ip}/24", "dev", host_dev)
        sh("ip", "link", "set", host_dev, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{node_ip}/24", "dev", ns_dev)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_dev, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield Link(netns=ns, host_ip=host_ip, node_ip=node_ip)
    finally:
        subprocess.run(["ip", "link", "del", host_dev], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@contextlib.contextmanager
def cluster_on(link: Link) -> Iterator[EmbeddedCluster]:
    """A throwaway cluster that also listens on the host side of the veth, where the
    node may log in with the role's password."""
    base = scratch_dir("qvd-test-pg-partition-")
    cluster = EmbeddedCluster(
        datadir=base / "data", socket_dir=base / "sock", port=free_port(), unsafe_fast=True,
        extra_options=["-c", f"listen_addresses=127.0.0.1,{link.host_ip}"],
    )  # fmt: skip
    try:
        cluster.initialize()
        with open(cluster.datadir / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {link.node_ip}/32 scram-sha-256\n")
        cluster.start()
        cluster.ensure_database()
        yield cluster
    finally:
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


def _cut(link: Link, port: int) -> None:
    """Drop every packet from the node to PostgreSQL (silence, not refusal)."""
    rules = (
        "add table inet qvdcut\n"
        "add chain inet qvdcut out { type filter hook output priority 0; policy accept; }\n"
        f"add rule inet qvdcut out ip daddr {link.host_ip} tcp dport {port} drop\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", link.netns, "nft", "-f", "-"], input=rules, text=True,
        check=True, capture_output=True,
    )  # fmt: skip


def _heal(link: Link) -> None:
    subprocess.run(
        ["ip", "netns", "exec", link.netns, "nft", "delete", "table", "inet", "qvdcut"],
        check=False, capture_output=True,
    )  # fmt: skip


def _wait_exit(pid: int, timeout: float) -> tuple[float, float] | None:
    """When process ``pid`` ended: (boot clock, wall clock), or None if it still runs."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return (boot_clock(), time.time()) if ready else None
    finally:
        os.close(fd)


def _lost_at(engine: Engine, host_id: int) -> float:
    """When the database marked the host lost (its own clock, seconds since the epoch)."""
    with engine.begin() as conn:
        return float(
            conn.execute(
                text("SELECT extract(epoch FROM state_ts) FROM host_runtimes WHERE host_id = :h"),
                {"h": host_id},
            ).scalar_one()
        )


def _running_in(netns: str, lxcpath: Path) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "lxc-ls", "-P", str(lxcpath), "--running", "-1"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return bool(out.strip())


def test_a_partitioned_node_stops_its_desktop_before_a_peer_may_take_it(
    run_dir: Path, lxc_storage: Path, test_image: Path,  # noqa: F811 - tests.hkd's fixtures
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    tag = f"{os.getpid() % 100000}"
    with node_namespace(tag) as link, cluster_on(link) as cluster:
        engine = make_engine(cluster.target())
        upgrade(engine)
        node_a = LxcNode.create(run_dir, lxc_storage, "node-a")
        host_a = add_host(engine, node_a.name, node_a.host_address)
        host_b = add_host(engine, "node-b", "10.231.0.3")
        # node A logs in over TCP through the veth, its password in a passfile
        passfile = run_dir / "pgpass"
        password = cluster.password_file.read_text().strip()
        passfile.write_text(f"{link.host_ip}:{cluster.port}:qvd:qvd:{password}\n")
        passfile.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(passfile))
        over_veth = DatabaseTarget(
            {"host": link.host_ip, "port": str(cluster.port), "dbname": "qvd", "user": "qvd"}
        )
        proc_a = HkdProcess(
            node_a.config_file(**_TIMING), over_veth, run_dir / "node-a.log", netns=link.netns
        )
        backend_b, vma_b = TimedBackend(), FakeVma()
        node_b = Hkd(
            hkd_config(run_dir, "node-b", **_TIMING),
            backend=backend_b, vma=vma_b, target=cluster.target(),
        )  # fmt: skip
        try:
            proc_a.wait_running()
            node_b.start()
            vm_id, _ = add_lxc_vm(engine, node_a, test_image, 1)
            command(engine, vm_id, "start", host_a.id)
            wait_for(lambda: state_of(engine, vm_id) == "running", 90, "running on node A")
            with engine.begin() as conn:
                pid_a = int(
                    conn.execute(
                        text("SELECT vm_pid FROM vm_runtimes WHERE vm_id = :v"), {"v": vm_id}
                    ).scalar_one()
                )
            assert Path(f"/proc/{pid_a}").exists()

            _cut(link, cluster.port)
            cut_at = boot_clock()
            # B releases A's VMs once A is lost; then it is started on B, as the L7R would
            release: dict[str, float] = {}

            def released() -> bool:
                if host_state(engine, host_a.id) != "lost":
                    return False
                release.setdefault("seen", boot_clock())
                return True

            died = _wait_exit(pid_a, 60)
            wait_for(released, 60, "node A marked lost by node B")
            row = _vm_row(engine, vm_id)
            assert (row["vm_state"], row["host_id"]) == ("stopped", None)
            vma_b.alive.add(str(row["ip"]))
            command(engine, vm_id, "start", host_b.id)
            wait_for(lambda: state_of(engine, vm_id) == "running", 30, "running on node B")

            assert died is not None, "node A's desktop still runs after it was cut off"
            died_boot, died_wall = died
            lost_wall = _lost_at(engine, host_a.id)
            started_b = backend_b.started_at[vm_id]
            timeline = (
                f"cut {0:.2f}  A's desktop dead {died_boot - cut_at:.2f}  "
                f"A marked lost {lost_wall - died_wall + died_boot - cut_at:.2f}  "
                f"B starts it {started_b - cut_at:.2f} (seconds after the cut)"
            )
            print(timeline)
            assert died_wall < lost_wall, timeline  # dead before a peer could release it
            assert died_boot < started_b, timeline  # so never running on two nodes
            fence = float(_TIMING["internal.hkd.agent.ticker.timeout"])
            kill = float(_TIMING["internal.hkd.fence.kill_time"])
            assert died_boot - cut_at < fence + kill + 1, timeline  # on time, not by luck

            # A reaches the database again: it rejoins and does not run the VM it lost
            _heal(link)
            wait_for(lambda: host_state(engine, host_a.id) == "running", 60, "A rejoins")
            lxcpath = node_a.root / node_a.name / "lxc"
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                assert not _running_in(link.netns, lxcpath), "A runs B's desktop again"
                time.sleep(0.2)
            assert backend_b.is_alive(vm_id)
            assert proc_a.stop() == 0
        except BaseException:
            log = run_dir / "node-a.log"
            if log.exists():
                print(f"--- node A's log\n{log.read_text()[-4000:]}")
            raise
        finally:
            _heal(link)
            if not node_b.wait(0):
                node_b.halt()
            if proc_a.proc.poll() is None:
                proc_a.stop()
            node_a.clean_in_netns(link.netns)
            engine.dispose()


def _vm_row(engine: Engine, vm_id: int) -> dict[str, object]:
    with engine.begin() as conn:
        row = (
            conn.execute(
                text(
                    "SELECT r.vm_state, r.host_id, v.ip FROM vm_runtimes r JOIN vms v "
                    "ON v.id = r.vm_id WHERE r.vm_id = :v"
                ),
                {"v": vm_id},
            )
            .mappings()
            .one()
        )
    return dict(row)
