"""A desktop user fills their home: before the fix ``user_storage_size`` was not
enforced (the home was a plain directory on the node's storage), so one user could
fill the node's disk, and every other desktop's home with it.

Now each home is its own file system of ``user_storage_size`` MiB (a sparse ext4 image
the HKD loop-mounts): in a real container, ``dd`` past the quota fails with ENOSPC and
leaves at most the quota, while another VM's home on the same node still takes a write
larger than the first VM's quota."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.hkd.backends.homefs import home_image
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.daemon import Hkd
from tests.hkd.backends.test_lxc import attach, node_hkd, wait_running
from tests.hkd.conftest import command, state_of, wait_for
from tests.hkd.conftest import lxc_node as lxc_node
from tests.hkd.conftest import lxc_storage as lxc_storage
from tests.hkd.conftest import run_dir as run_dir
from tests.hkd.conftest import test_image as test_image
from tests.hkd.lxcnode import LxcNode, add_lxc_vm

__all__ = ["node_hkd"]

pytestmark = pytest.mark.timeout(900)


def test_a_home_cannot_grow_past_its_quota(
    engine: Engine, node_hkd: tuple[Hkd, LxcNode], test_image: Path
) -> None:
    hkd, node = node_hkd
    assert hkd.host is not None
    backend = hkd.backend
    assert isinstance(backend, LxcBackend)
    small, _ = add_lxc_vm(engine, node, test_image, 1, user_storage=16)
    large, _ = add_lxc_vm(engine, node, test_image, 2, user_storage=64)
    for vm_id in (small, large):
        command(engine, vm_id, "start", hkd.host.id)
    wait_running(engine, small, large)

    fill = "dd if=/dev/zero of=/home/fill bs=1M count=48 2>&1; echo rc=$?; sync"
    out = attach(backend, small, fill)
    assert "No space left on device" in out, out
    assert "rc=1" in out, out
    size = int(attach(backend, small, "stat -c %s /home/fill").strip())
    assert size <= 16 << 20, size
    image = home_image(backend.layout.home(f"{small}-fs"))
    assert image.stat().st_blocks * 512 <= 17 << 20  # the node's disk took the quota at most

    out = attach(backend, large, "dd if=/dev/zero of=/home/fill bs=1M count=32 2>&1; echo rc=$?")
    assert "rc=0" in out, out
    assert int(attach(backend, large, "stat -c %s /home/fill").strip()) == 32 << 20

    for vm_id in (small, large):
        command(engine, vm_id, "stop")
    for vm_id in (small, large):
        wait_for(lambda v=vm_id: state_of(engine, v) == "stopped", 60, "stopped")  # type: ignore[misc]
    assert not any(
        line.split()[4] == str(backend.layout.home(f"{small}-fs"))
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )  # unmounted once the VM is cleaned up
