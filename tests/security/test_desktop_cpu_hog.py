"""Attack: a desktop spins busy loops on every CPU of the node to starve the other
desktops (and the HKD). Before issue #13 a container had only ``cpu.shares`` (a share
under contention, no ceiling): two loops took both CPUs of this machine. Now
``vm.cpus`` is a ceiling: the LXC backend gives each container a CFS quota of that many
CPUs (``cpu.cfs_quota_us = vcpus * cfs_period_us``), read back after start. A desktop
with 1 vCPU running two loops is throttled by the kernel (its ``cpu.stat`` counts the
periods it was held back), on a real container of the test image."""

from __future__ import annotations

import time
from pathlib import Path

from qvd.hkd.backends.base import NetworkSpec, VmSpec
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.backends.lxc.control import run
from qvd.hkd.backends.lxc.layout import container_name
from tests.hkd.conftest import wait_for
from tests.hkd.lxcnode import LxcNode, leaks

VM_ID = 10091
SPIN = "while :; do :; done"


def _throttled(backend: LxcBackend) -> int:
    stat = backend.lxc.limit(container_name(VM_ID), "cpu", "cpu.stat") or ""
    for line in stat.splitlines():
        key, _, value = line.partition(" ")
        if key == "nr_throttled":
            return int(value)
    return 0


def test_a_desktop_cannot_take_more_cpus_than_it_has(lxc_node: LxcNode, test_image: Path) -> None:
    images = lxc_node.storage / "images"
    images.mkdir(parents=True, exist_ok=True)
    image = images / f"10091-{test_image.name}"
    if not image.exists():
        image.hardlink_to(test_image)
    spec = VmSpec(
        vm_id=VM_ID, name="hog", di_id=10091, image=image, memory_mib=128, vcpus=1,
        cpu_weight=100, vma_secret="s" * 64,
        network=NetworkSpec(bridge=lxc_node.bridge, address=lxc_node.vm_address(91),
                            prefix=24, mac="54:52:00:00:00:91", host_device="qvd10091"),
    )  # fmt: skip
    backend = lxc_node.backend()
    lxc_node.network().ensure()
    backend.prepare(spec)
    try:
        backend.start(spec)
        assert backend.limits(VM_ID)["cpu.cfs_quota_us"] == "100000"  # one CPU of time
        assert _throttled(backend) == 0
        # root in the desktop starts two busy loops (as many as this node has CPUs)
        run("lxc-attach", "-P", str(backend.layout.lxcpath), "-n", container_name(VM_ID), "--",
            "sh", "-c", f"({SPIN}) >/dev/null 2>&1 & ({SPIN}) >/dev/null 2>&1 &")  # fmt: skip
        deadline = time.monotonic() + 60
        while _throttled(backend) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _throttled(backend) > 0, "the desktop's loops were never held back"
    finally:
        backend.kill(VM_ID)
        wait_for(lambda: not backend.is_alive(VM_ID), 30, "the container to end")
        backend.cleanup(VM_ID)
    assert leaks(backend, VM_ID, lxc_node.storage) == []
