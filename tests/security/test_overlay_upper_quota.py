"""Attack: root inside a desktop fills the node's storage by writing outside its home
(``/var/tmp``, ``/opt``, ``/root``: the root overlay's upper layer).

Before the fix the upper was a plain directory on the node's storage, so one desktop
could write until the node's disk was full, taking every other desktop, home, image
and the database's disk with it. Now each upper is a file system of its own of
``vm.overlay.size`` MiB (a sparse ext4 image loop-mounted under ``overlayfs``): ``dd``
as root in a real container stops with ENOSPC at the bound, the node's disk gives the
image no more than the bound, and another desktop on the same node still writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.hkd.backends.homefs import home_image
from qvd.hkd.backends.lxc import LxcBackend
from tests.hkd.conftest import command, state_of, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.security.desktops import node_hkd, run_in, start_vm

pytestmark = pytest.mark.timeout(900)

BOUND_MIB = 32


def _mounted(path: Path) -> bool:
    return any(
        line.split()[4] == str(path)
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )


def test_root_in_a_desktop_cannot_write_past_its_upper_bound(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    with node_hkd(db, engine, lxc_node, **{"vm.overlay.size": str(BOUND_MIB)}) as hkd:
        backend = hkd.backend
        assert isinstance(backend, LxcBackend)
        attacker, osf_id = add_lxc_vm(engine, lxc_node, test_image, 1)
        neighbour, _ = add_lxc_vm(engine, lxc_node, test_image, 2, osf_id=osf_id)
        for vm_id in (attacker, neighbour):
            start_vm(engine, hkd, vm_id)
        di_id = next(
            int(p.name.split("-")[0])
            for p in backend.layout.layers_of(attacker)
        )  # fmt: skip

        fill = run_in(
            backend, attacker,
            "id -u; dd if=/dev/zero of=/var/tmp/fill bs=1M count=256 2>&1; echo rc=$?; sync",
            timeout=120,
        )  # fmt: skip
        assert fill.out.splitlines()[0] == "0", fill.out  # root in the desktop
        assert "No space left on device" in fill.out, fill.out
        assert "rc=1" in fill.out, fill.out
        written = int(run_in(backend, attacker, "stat -c %s /var/tmp/fill").out)
        assert written <= BOUND_MIB << 20, written
        image = home_image(backend.layout.layer(di_id, attacker))
        assert image.stat().st_blocks * 512 <= (BOUND_MIB + 1) << 20  # the node's share

        # another desktop on the node is unaffected: its own upper still takes a write
        other = run_in(
            backend, neighbour,
            "dd if=/dev/zero of=/var/tmp/fill bs=1M count=24 2>&1; echo rc=$?",
            timeout=120,
        )  # fmt: skip
        assert "rc=0" in other.out, other.out
        assert int(run_in(backend, neighbour, "stat -c %s /var/tmp/fill").out) == 24 << 20

        for vm_id in (attacker, neighbour):
            command(engine, vm_id, "stop")
        for vm_id in (attacker, neighbour):
            wait_for(lambda v=vm_id: state_of(engine, v) == "stopped", 60, "stopped")  # type: ignore[misc]
        for vm_id in (attacker, neighbour):
            layer = backend.layout.layer(di_id, vm_id)
            assert not _mounted(layer), f"{layer} stays mounted after the VM stopped"
            assert not os.path.ismount(layer)
