"""What the real-session tests share (tests/e2e, tests/client): an LXC node whose HKD
hosts the L7R on loopback, a ``qvd-client`` process, a user's password, commands run
inside a VM's container."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, hash_password
from qvd.hkd.daemon import Hkd
from qvd.node.daemons import node_services
from tests.hkd.conftest import add_host
from tests.hkd.lxcnode import LxcNode

__all__ = [
    "Client",
    "L7rNode",
    "in_vm",
    "node",
    "running_node",
    "set_password",
    "xterm_pids",
]


@dataclass(frozen=True)
class L7rNode:
    hkd: Hkd
    lxc: LxcNode

    @property
    def port(self) -> int:
        """The port of the L7R the HKD hosts (on 127.0.0.1)."""
        return int(self.hkd.services[0].port)  # type: ignore[attr-defined]


@contextlib.contextmanager
def running_node(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, **overrides: str
) -> Iterator[L7rNode]:
    """The LXC node's HKD, started with its L7R on a free loopback port (and no user
    portal: it would listen on *:4433; tests/e2e/portal.py's ``portal_node`` has one);
    ``overrides`` are more node settings. Stopped at the end."""
    add_host(engine, lxc_node.name, lxc_node.host_address)
    config = lxc_node.config(
        **{"l7r.address": "127.0.0.1", "l7r.port": "0", "l7r.portal.enable": "0", **overrides}
    )
    hkd = Hkd(config, target=db, services=node_services(config, db))
    hkd.start()
    try:
        yield L7rNode(hkd=hkd, lxc=lxc_node)
    finally:
        hkd.stop()


@pytest.fixture
def node(db: DatabaseTarget, engine: Engine, lxc_node: LxcNode) -> Iterator[L7rNode]:
    """``running_node`` with the node's default settings."""
    with running_node(db, engine, lxc_node) as started:
        yield started


def set_password(engine: Engine, vm_id: int, password: str) -> str:
    """Give the user of VM ``vm_id`` the password; returns the user's login."""
    with engine.begin() as conn:
        login = conn.execute(
            text("SELECT u.login FROM users u JOIN vms v ON v.user_id = u.id WHERE v.id = :v"),
            {"v": vm_id},
        ).scalar_one()
        conn.execute(
            text("UPDATE users SET password = :p WHERE login = :l"),
            {"p": hash_password(password), "l": login},
        )
    return str(login)


def in_vm(lxc: LxcNode, vm_id: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` run inside the VM's container (its output captured, never checked)."""
    return subprocess.run(
        ["lxc-attach", "-P", str(lxc.root / lxc.name / "lxc"), "-n", f"qvd-{vm_id}", "--",
         *argv],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def xterm_pids(lxc: LxcNode, vm_id: int) -> list[int]:
    """The PIDs (in the container) of the VM's xterms."""
    return sorted(
        int(w) for w in in_vm(lxc, vm_id, "ps", "-C", "xterm", "-o", "pid=").stdout.split()
    )


class Client:
    """A ``qvd-client`` process (``python -m qvd.client.main argv``) in a session of its
    own, its output collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qvd.client.main", *argv], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def children(self) -> list[int]:
        pid = self.proc.pid
        text_ = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(word) for word in text_.split()]

    def close(self) -> None:
        """SIGTERM to the client's session (the client and its nxproxy), SIGKILL after
        10 s; its output read to the end."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
