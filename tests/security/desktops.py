"""A node's HKD with the real LXC backend, and commands run as root inside a desktop."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.hkd import store
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.daemon import Hkd
from qvd.hkd.health import Liveness
from tests.hkd.conftest import add_host, command, state_of, wait_for
from tests.hkd.lxcnode import LxcNode

__all__ = ["Shell", "node_hkd", "run_in", "start_vm", "vma_answers"]


@contextlib.contextmanager
def node_hkd(db: DatabaseTarget, engine: Engine, node: LxcNode, **extra: str) -> Iterator[Hkd]:
    """The node's real HKD (its host row added first), stopped at the end."""
    add_host(engine, node.name, node.host_address)
    hkd = Hkd(node.config(**extra), target=db)
    hkd.start()
    try:
        yield hkd
    finally:
        if not hkd.wait(0):
            hkd.stop()


def vma_answers(hkd: Hkd, engine: Engine, vm_id: int) -> bool:
    """Whether the desktop's VMA answers the node's ping (with the VM's own secret)."""
    assert hkd.reconciler is not None
    with engine.begin() as conn:
        view = store.load_vm(conn, vm_id)
    assert view is not None
    assert view.ip is not None
    secret = hkd.reconciler.vma_secret(view)
    return hkd.reconciler.vma.ping(view.ip, hkd.settings.vma_port, secret) is Liveness.ANSWERED


def start_vm(engine: Engine, hkd: Hkd, vm_id: int) -> None:
    assert hkd.host is not None
    command(engine, vm_id, "start", hkd.host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", 60, f"VM {vm_id} running")


@dataclass(frozen=True)
class Shell:
    """What a shell command printed inside the desktop, and how it ended."""

    code: int
    out: str


def run_in(backend: LxcBackend, vm_id: int, script: str, timeout: float = 30) -> Shell:
    """``sh -c script`` as root inside the desktop (lxc-attach keeps the container's
    namespaces, capability drops and seccomp policy)."""
    done = subprocess.run(
        ["lxc-attach", "-P", str(backend.layout.lxcpath), "-n", f"qvd-{vm_id}", "--",
         "sh", "-c", script],
        capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip
    return Shell(done.returncode, (done.stdout + done.stderr).strip())
