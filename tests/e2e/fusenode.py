"""A real LXC node for the shared-folder tests (its desktops get /dev/fuse), VM
properties, and shell commands as the session's user inside the desktop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.hkd.daemon import Hkd
from qvd.node.daemons import node_services
from tests.e2e.node import L7rNode, in_vm
from tests.hkd.conftest import add_host
from tests.hkd.lxcnode import LxcNode

__all__ = ["Desktop", "fuse_node", "set_vm_property", "wait_until"]


@pytest.fixture
def fuse_node(db: DatabaseTarget, engine: Engine, lxc_node: LxcNode) -> Iterator[L7rNode]:
    """The e2e node, its desktops given /dev/fuse (``vm.lxc.fuse``)."""
    add_host(engine, lxc_node.name, lxc_node.host_address)
    config = lxc_node.config(
        **{"l7r.address": "127.0.0.1", "l7r.port": "0", "l7r.portal.enable": "0",
           "vm.lxc.fuse": "1"}
    )  # fmt: skip
    hkd = Hkd(config, target=db, services=node_services(config, db))
    hkd.start()
    try:
        yield L7rNode(hkd=hkd, lxc=lxc_node)
    finally:
        hkd.stop()


def set_vm_property(engine: Engine, vm_id: int, key: str, value: str) -> None:
    with engine.begin() as conn:
        prop = conn.execute(
            text(
                "INSERT INTO properties_list (key, tenant_id) VALUES (:k, 1) "
                "ON CONFLICT (key, tenant_id) DO UPDATE SET key = EXCLUDED.key RETURNING id"
            ),
            {"k": key},
        ).scalar_one()
        assignment = conn.execute(
            text(
                "INSERT INTO qvd_object_properties_list (property_id, qvd_object) "
                "VALUES (:p, 'vm') ON CONFLICT (property_id, qvd_object) "
                "DO UPDATE SET qvd_object = EXCLUDED.qvd_object RETURNING id"
            ),
            {"p": prop},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO vm_properties (vm_id, property_id, value) VALUES (:v, :p, :x)"),
            {"v": vm_id, "p": assignment, "x": value},
        )


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class Desktop:
    """Shell commands as the session's user inside the VM."""

    def __init__(self, lxc: LxcNode, vm_id: int) -> None:
        self.lxc, self.vm_id = lxc, vm_id
        self.user = ""

    def find_user(self) -> bool:
        done = in_vm(self.lxc, self.vm_id, "ps", "-C", "nxagent", "-o", "user=")
        self.user = done.stdout.strip().split("\n")[0].strip()
        return bool(self.user)

    def sh(self, script: str) -> tuple[int, str]:
        done = in_vm(self.lxc, self.vm_id, "su", "-s", "/bin/sh", self.user, "-c", script)
        return done.returncode, done.stdout + done.stderr

    def mounts(self) -> str:
        return in_vm(self.lxc, self.vm_id, "cat", "/proc/self/mountinfo").stdout

    def logs(self) -> str:
        parts = []
        for name in ("vma.log", "nxagent.log"):
            done = in_vm(self.lxc, self.vm_id, "tail", "-n", "40", f"/var/log/qvd/{name}")
            parts.append(f"{name}:\n{done.stdout}{done.stderr}")
        return "\n".join(parts)
