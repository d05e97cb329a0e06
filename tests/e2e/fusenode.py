"""A real LXC node for the device tests (its desktops get /dev/fuse), and shell commands
as the session's user inside the desktop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from tests.e2e.devices import node_overrides, set_vm_property, wait_until
from tests.e2e.node import L7rNode, in_vm, running_node
from tests.hkd.lxcnode import LxcNode

# set_vm_property and wait_until are tests/e2e/devices.py's, named here for the tests
# that take them from this module
__all__ = ["Desktop", "fuse_node", "set_vm_property", "wait_until"]


@pytest.fixture
def fuse_node(db: DatabaseTarget, engine: Engine, lxc_node: LxcNode) -> Iterator[L7rNode]:
    """The e2e node, its desktops given /dev/fuse (``vm.lxc.fuse``)."""
    with running_node(db, engine, lxc_node, **node_overrides()) as started:
        yield started


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
