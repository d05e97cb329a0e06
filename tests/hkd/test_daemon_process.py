"""The HKD as a real process: killed with SIGKILL and restarted, and two nodes in
their own network namespaces watching each other."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DATABASE_URL_ENV, DatabaseTarget
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.backends.lxc.layout import container_name
from qvd.hkd.lease import LeaseFile, boot_clock
from tests.conftest import end_process
from tests.hkd.conftest import add_host, command, host_state, runtime, state_of, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm, leaks
from tests.node.test_cli import url_of

pytestmark = pytest.mark.timeout(900)


class HkdProcess:
    """`qvd hkd` in a child process (optionally inside a network namespace)."""

    def __init__(self, conf: Path, db: DatabaseTarget, log: Path, netns: str | None = None):
        env = {**os.environ, DATABASE_URL_ENV: url_of(db)}
        env.pop("QVD_CONFIG", None)
        argv = [sys.executable, "-m", "qvd", "hkd", "--config", str(conf)]
        if netns is not None:
            argv = node_in_netns(netns, log.parent / f"sysfs-{netns}", argv)
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait_running(self, timeout: float = 60) -> None:
        def up() -> bool:
            return "HKD running as node" in self.log.read_text() or self.proc.poll() is not None

        wait_for(up, timeout, "the HKD to start")
        assert self.proc.poll() is None, self.log.read_text()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        end_process(self.proc, 60)
        return self.proc.returncode


@pytest.fixture
def processes() -> Iterator[list[HkdProcess]]:
    started: list[HkdProcess] = []
    yield started
    for p in started:
        p.stop()


@pytest.mark.parametrize("moment", ["claimed", "container up", "running"])
def test_kill_9_at_any_point_leaves_nothing_behind(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path,
    processes: list[HkdProcess], moment: str,
) -> None:  # fmt: skip
    host = add_host(engine, lxc_node.name, lxc_node.host_address)
    # a restart well within the fence timeout: the running container must be adopted
    conf = lxc_node.config_file(**_LONG_FENCE)
    backend = lxc_node.backend()
    vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1)
    first = HkdProcess(conf, db, lxc_node.root / "hkd1.log")
    processes.append(first)
    first.wait_running()
    command(engine, vm_id, "start", host.id)
    if moment == "claimed":
        wait_for(lambda: state_of(engine, vm_id) == "starting", 30, "the claim")
    elif moment == "container up":
        wait_for(lambda: _init_pid(backend, vm_id) != 0, 30, "the container")
    else:
        wait_for(lambda: state_of(engine, vm_id) == "running", 60, "running")
    pid_before = _init_pid(backend, vm_id)
    first.kill9()
    assert moment == "claimed" or pid_before != 0

    second = HkdProcess(conf, db, lxc_node.root / "hkd2.log")
    processes.append(second)
    second.wait_running()
    wait_for(lambda: state_of(engine, vm_id) == "running", 60, "running after the restart")
    assert backend.list_running() == {vm_id}
    if pid_before != 0:  # adopted, not restarted: the very same init process
        assert _init_pid(backend, vm_id) == pid_before
    command(engine, vm_id, "stop")
    wait_for(lambda: state_of(engine, vm_id) == "stopped", 60, "stopped")
    assert second.stop() == 0
    assert leaks(backend, vm_id, lxc_node.storage) == []
    assert runtime(engine, vm_id)["host_id"] is None


def test_a_dead_hkd_s_watchdog_kills_its_desktops_at_the_lease_deadline(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path,
    processes: list[HkdProcess],
) -> None:  # fmt: skip
    """kill -9 of the HKD and no restart: the watchdog it left kills the desktop when
    the lease runs out (not before), well before peers may release it."""
    host = add_host(engine, lxc_node.name, lxc_node.host_address)
    config = lxc_node.config()
    conf = lxc_node.config_file()
    backend = lxc_node.backend()
    vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1)
    first = HkdProcess(conf, db, lxc_node.root / "hkd1.log")
    processes.append(first)
    first.wait_running()
    command(engine, vm_id, "start", host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", 60, "running")
    pid = _init_pid(backend, vm_id)
    first.kill9()
    lease = LeaseFile(config.get_path("path.run") / "hkd.lease").read()
    assert lease is not None
    assert not lease.released
    died_at = _wait_exit(pid, 60)
    settings_fence_kill = config.get_float("internal.hkd.fence.kill_time")
    assert died_at >= lease.deadline - 0.05, "killed before the lease expired"
    assert died_at <= lease.deadline + settings_fence_kill + 0.5
    lost_after = config.get_float("internal.hkd.cluster.node.timeout")
    fence = config.get_float("internal.hkd.agent.ticker.timeout")
    assert died_at < lease.deadline - fence + lost_after  # before any peer may act
    assert backend.list_running() == set()
    second = HkdProcess(conf, db, lxc_node.root / "hkd2.log")  # it records the loss
    processes.append(second)
    second.wait_running()
    wait_for(lambda: state_of(engine, vm_id) == "stopped", 60, "stopped")
    assert second.stop() == 0
    assert leaks(backend, vm_id, lxc_node.storage) == []


_LONG_FENCE = {
    "internal.hkd.agent.ticker.timeout": "15",
    "internal.hkd.cluster.node.timeout": "20",
}


def _init_pid(backend: LxcBackend, vm_id: int) -> int:
    return backend.lxc.pid(container_name(vm_id))


def _wait_exit(pid: int, timeout: float) -> float:
    """Block until process ``pid`` ends; when (boot clock), precisely (a pidfd)."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"process {pid} still runs after {timeout} s"
        return boot_clock()
    finally:
        os.close(fd)


def node_in_netns(netns: str, sysfs: Path, argv: list[str]) -> list[str]:
    """Run ``argv`` as a node inside ``netns``, with LXC working there.

    ``ip netns exec`` remounts all of /sys, which hides the cgroup hierarchy LXC needs;
    instead: a private mount namespace where only the network parts of sysfs are those
    of the node's namespace (lab notes §2d)."""
    sysfs.mkdir(parents=True, exist_ok=True)
    script = (
        f"mount -t sysfs none {sysfs} && "
        f"mount --bind {sysfs}/class/net /sys/class/net && "
        f"mount --bind {sysfs}/devices/virtual/net /sys/devices/virtual/net && "
        'exec "$@"'
    )
    return [
        "nsenter", f"--net=/run/netns/{netns}", "unshare", "--mount", "--propagation",
        "private", "sh", "-c", script, "node", *argv,
    ]  # fmt: skip


def _netns(name: str) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)


def test_two_nodes_a_silent_one_is_lost_and_recovers(
    db: DatabaseTarget, engine: Engine, run_dir: Path, lxc_storage: Path, test_image: Path,
    processes: list[HkdProcess],
) -> None:  # fmt: skip
    nodes = [LxcNode.create(run_dir, lxc_storage, name) for name in ("node-a", "node-b")]
    namespaces = [f"qvdt-{n.name}-{os.getpid()}" for n in nodes]
    try:
        for node, ns in zip(nodes, namespaces, strict=True):
            _netns(ns)
            add_host(engine, node.name, node.host_address)
        hosts = {n.name: h for n, h in zip(nodes, _host_ids(engine, nodes), strict=True)}
        procs = [
            HkdProcess(node.config_file(), db, run_dir / f"{node.name}.log", netns=ns)
            for node, ns in zip(nodes, namespaces, strict=True)
        ]
        processes.extend(procs)
        for p in procs:
            p.wait_running()
        node_a = nodes[0]
        vm_id, _ = add_lxc_vm(engine, node_a, test_image, 1)
        command(engine, vm_id, "start", hosts["node-a"])
        wait_for(lambda: state_of(engine, vm_id) == "running", 60, "running on node A")

        procs[0].proc.send_signal(signal.SIGSTOP)  # node A falls silent
        wait_for(lambda: host_state(engine, hosts["node-a"]) == "lost", 30, "A marked lost")
        row = runtime(engine, vm_id)
        assert (row["vm_state"], row["host_id"]) == ("stopped", None)
        assert host_state(engine, hosts["node-b"]) == "running"

        procs[0].proc.send_signal(signal.SIGCONT)  # A comes back
        wait_for(lambda: host_state(engine, hosts["node-a"]) == "running", 10, "A recovers")
        lxcpath = node_a.root / node_a.name / "lxc"
        wait_for(lambda: not _lxc_running_in(ns=namespaces[0], node=node_a), 30,
                 "A to stop the VM it no longer owns")  # fmt: skip
        wait_for(lambda: not list(lxcpath.glob("qvd-*")), 30, "A to clean up after it")
        for p in procs:
            assert p.stop() == 0
    except BaseException:
        for node in nodes:  # the daemons' own words, for the failure report
            log = run_dir / f"{node.name}.log"
            if log.exists():
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")
        raise
    finally:
        for node, ns in zip(nodes, namespaces, strict=True):
            node.clean_in_netns(ns)


def _host_ids(engine: Engine, nodes: list[LxcNode]) -> list[int]:
    from sqlalchemy import text

    with engine.begin() as conn:
        return [
            conn.execute(text("SELECT id FROM hosts WHERE name = :n"), {"n": n.name}).scalar_one()
            for n in nodes
        ]


def _lxc_running_in(*, ns: str, node: LxcNode) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "lxc-ls", "-P", str(node.root / node.name / "lxc"),
         "--running", "-1"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return bool(out.strip())
