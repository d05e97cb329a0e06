"""The VM stage's pure parts: which kernel modules a VM keeps, and the key of the stage."""

from __future__ import annotations

import dataclasses

from qvd.di.recipe import load_recipe
from qvd.di.vmstage import CMDLINE, modules_to_keep, vm_stage_key

MODULES_DEP = """\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/firmware/iscsi_ibft.ko: kernel/drivers/scsi/iscsi_boot_sysfs.ko
kernel/drivers/scsi/iscsi_boot_sysfs.ko:
kernel/drivers/scsi/virtio_scsi.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/scsi/scsi_mod.ko:
kernel/drivers/gpu/drm/drm.ko:
kernel/fs/btrfs/btrfs.ko: kernel/lib/raid6/raid6_pq.ko
kernel/lib/raid6/raid6_pq.ko:
kernel/fs/fuse/fuse.ko:
kernel/drivers/infiniband/core/ib_core.ko:
"""


def test_the_modules_a_vm_keeps_and_their_dependencies() -> None:
    kept = modules_to_keep(MODULES_DEP)
    assert kept == {
        "kernel/drivers/net/virtio_net.ko",
        "kernel/drivers/net/net_failover.ko",
        "kernel/net/core/failover.ko",
        "kernel/drivers/firmware/iscsi_ibft.ko",
        "kernel/drivers/scsi/iscsi_boot_sysfs.ko",  # a dependency, kept although in scsi/
        "kernel/lib/raid6/raid6_pq.ko",  # lib/ is kept
        "kernel/fs/fuse/fuse.ko",
    }
    assert modules_to_keep(MODULES_DEP, keep=("drivers/gpu/",)) == {"kernel/drivers/gpu/drm/drm.ko"}


def test_the_stage_key_and_the_command_line() -> None:
    test = load_recipe("test")
    assert vm_stage_key(test) == vm_stage_key(dataclasses.replace(test, vma_conf=()))
    assert vm_stage_key(test) != vm_stage_key(load_recipe("tiny"))
    assert CMDLINE.split()[:2] == ["root=LABEL=qvdroot", "rw"]
    assert "console=ttyS0" in CMDLINE.split()
