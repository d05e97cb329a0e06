"""Fixtures for HKD tests: seeded VMs on a real database, configs with short timeouts,
and a fake VMA (the peer of the code under test in unit tests of the reconcile loop)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, text

from qvd.config import Config
from qvd.db import EmbeddedCluster
from qvd.hkd.health import Liveness
from qvd.hkd.store import HostRow
from tests.conftest import scratch_dir
from tests.hkd.lxcnode import LxcNode

if TYPE_CHECKING:
    from qvd.hkd.daemon import Hkd

_ips = itertools.count(100)


@dataclass
class FakeVma:
    """Answers pings for the addresses in ``alive``, times out for those in ``silent``,
    refuses the others; records every call."""

    alive: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ping(self, address: str, port: int, secret: str) -> Liveness:
        with self.lock:
            self.calls.append(("ping", address))
            if address in self.alive and len(secret) == 64:
                return Liveness.ANSWERED
            return Liveness.SILENT if address in self.silent else Liveness.DEAD

    def poweroff(self, address: str, port: int, secret: str) -> bool:
        with self.lock:
            self.calls.append(("poweroff", address))
        return True

    def expire(self, address: str, port: int, secret: str, *, soft: str, hard: str) -> bool:
        with self.lock:
            self.calls.append(("expire", address))
        return True


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = scratch_dir(f"qvd-test-hkd-{os.getpid()}-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def started() -> Iterator[list[Hkd]]:
    """HKDs a test started; stopped at the end whatever happens."""
    daemons: list[Hkd] = []
    yield daemons
    for d in daemons:
        if not d.wait(0):
            d.halt()


def hkd_config(run_dir: Path, nodename: str = "node1", **extra: str) -> Config:
    values = {
        "nodename": nodename,
        "vm.hypervisor": "fake",
        "vm.network.bridge.manage": "0",
        "path.run": str(run_dir / nodename),
        "path.storage.root": str(run_dir / nodename / "storage"),
        "internal.hkd.workers": "4",
        "internal.hkd.poll.delay": "0.5",
        "internal.hkd.agent.ticker.delay": "0.2",
        # fence 2 s + kill 0.3 s + jitter 0.38 s < lost 3 s (the settings refuse less)
        "internal.hkd.agent.ticker.timeout": "2",
        "internal.hkd.fence.kill_time": "0.3",
        "internal.hkd.agent.cluster_monitor.delay": "0.2",
        "internal.hkd.cluster.node.timeout": "3",
        # the fake backend lives in this process: no watchdog process could kill its VMs
        "internal.hkd.watchdog.enable": "0",
        "internal.hkd.vmhandler.vma_monitor.delay.after.ok": "0.1",
        "internal.hkd.vmhandler.vma_monitor.delay.after.error": "0.05",
        "internal.hkd.vmhandler.vma.failed.max_time.on.running": "0.5",
        "internal.hkd.vmhandler.vma.silent.max_time.on.running": "2",
        "internal.hkd.vmhandler.vma.failed.max_time.on.starting": "1",
        "internal.hkd.timeout.shutdown": "0.5",
        "internal.hkd.timeout.stop": "0.5",
        "vm.network.ip.start": "10.231.0.100",
        "vm.network.netmask": "16",
    }
    values.update(extra)
    return Config().with_overrides(values, source="test")


def add_host(engine: Engine, name: str = "node1", address: str = "10.231.0.2") -> HostRow:
    with engine.begin() as conn:
        host_id = conn.execute(
            text("INSERT INTO hosts (name, address) VALUES (:n, :a) RETURNING id"),
            {"n": name, "a": address},
        ).scalar_one()
    return HostRow(id=host_id, name=name, address=address)


def add_vm(
    engine: Engine,
    *,
    published: bool = True,
    tag: str = "default",
    user_storage: int = 0,
    login: str | None = None,
) -> tuple[int, str]:
    """A VM of a new user, OSF and DI (published with ``tag`` unless told not to)."""
    n = next(_ips)
    ip = f"10.231.0.{n}"
    login = login or f"user{n}"
    with engine.begin() as conn:
        user_id = conn.execute(
            text("INSERT INTO users (tenant_id, login) VALUES (1, :l) RETURNING id"), {"l": login}
        ).scalar_one()
        osf_id = conn.execute(
            text(
                "INSERT INTO osfs (tenant_id, name, memory, user_storage_size) "
                "VALUES (1, :n, 128, :s) RETURNING id"
            ),
            {"n": f"osf{n}", "s": user_storage},
        ).scalar_one()
        di_id = conn.execute(
            text("INSERT INTO dis (osf_id, path, version) VALUES (:o, :p, 'v1') RETURNING id"),
            {"o": osf_id, "p": f"img{n}.tar.zst"},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO di_tags (di_id, tag) VALUES (:d, :t)"), {"d": di_id, "t": tag}
        )
        if published:
            conn.execute(
                text("UPDATE di_runtimes SET state = 'published' WHERE di_id = :d"), {"d": di_id}
            )
        vm_id = conn.execute(
            text(
                "INSERT INTO vms (name, user_id, osf_id, ip) VALUES (:n, :u, :o, :ip) RETURNING id"
            ),
            {"n": f"vm{n}", "u": user_id, "o": osf_id, "ip": ip},
        ).scalar_one()
    return vm_id, ip


def command(engine: Engine, vm_id: int, cmd: str, host_id: int | None = None) -> None:
    """Ask for a start or stop as the API and L7R do."""
    with engine.begin() as conn:
        if host_id is not None:
            conn.execute(
                text("UPDATE vm_runtimes SET host_id = :h WHERE vm_id = :v"),
                {"h": host_id, "v": vm_id},
            )
        conn.execute(
            text("UPDATE vm_runtimes SET vm_cmd = :c WHERE vm_id = :v"), {"c": cmd, "v": vm_id}
        )


def runtime(engine: Engine, vm_id: int) -> dict[str, object]:
    with engine.begin() as conn:
        row = (
            conn.execute(text("SELECT * FROM vm_runtimes WHERE vm_id = :v"), {"v": vm_id})
            .mappings()
            .one()
        )
    return dict(row)


def state_of(engine: Engine, vm_id: int) -> str:
    return str(runtime(engine, vm_id)["vm_state"])


def host_state(engine: Engine, host_id: int) -> str:
    with engine.begin() as conn:
        return str(
            conn.execute(
                text("SELECT state FROM host_runtimes WHERE host_id = :h"), {"h": host_id}
            ).scalar_one()
        )


def wait_for(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# ---- real LXC nodes -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def test_image() -> Path:
    """The suite's small image (built once per machine, then cached)."""
    from qvd.di import ensure_image

    cache = os.environ.get("QVD_TEST_DI_CACHE")  # a separate image cache, if set
    return ensure_image("test", cache=Path(cache) if cache else None)


@pytest.fixture(scope="session")
def lxc_storage() -> Iterator[Path]:
    """One storage root for the session, so a DI's base is unpacked once."""
    path = scratch_dir(f"qvd-test-storage-{os.getpid()}-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lxc_node(run_dir: Path, lxc_storage: Path) -> Iterator[LxcNode]:
    node = LxcNode.create(run_dir, lxc_storage)
    yield node
    node.clean()


# ---- a database that hangs -------------------------------------------------------------------
def _cluster_pids(cluster: EmbeddedCluster) -> list[int]:
    """The postmaster of a cluster this test started, and its children."""
    postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                pids.append(int(stat.parent.name))
    return pids


@contextlib.contextmanager
def frozen(cluster: EmbeddedCluster) -> Iterator[None]:
    """The cluster's processes stopped (SIGSTOP): it accepts connections into the
    kernel's backlog and never answers, as a hung or unreachable server looks from a
    node. Thawed (SIGCONT) on every exit path."""
    pids = _cluster_pids(cluster)
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
