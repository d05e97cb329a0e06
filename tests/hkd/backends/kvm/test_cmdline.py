"""QEMU's argument list, built from a plan."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.kvm.accel import Accel
from qvd.hkd.backends.kvm.cmdline import QemuPlan, qemu_argv

PLAN = QemuPlan(
    vm_id=42,
    accel=Accel.TCG,
    tb_size_mib=128,
    machine="pc",
    memory_mib=512,
    vcpus=2,
    kernel=Path("/b/vmlinuz"),
    initrd=Path("/b/initrd.img"),
    kernel_cmdline="root=LABEL=qvdroot rw console=ttyS0 quiet",
    overlay=Path("/s/overlays/3-42-overlay.qcow2"),
    home=Path("/s/homes/42-data.qcow2"),
    tap="qvd42",
    mac="54:52:00:00:00:2a",
    identity=Path("/r/42/identity.json"),
    qmp=Path("/r/42/qmp.sock"),
    pidfile=Path("/r/42/qemu.pid"),
    runas="qvd-kvm",
)


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == flag]


def test_the_whole_line() -> None:
    argv = qemu_argv(PLAN)
    assert argv[0] == "qemu-system-x86_64"
    assert option(argv, "-name") == ["qvd-42"]
    assert option(argv, "-machine") == ["pc"]
    assert option(argv, "-accel") == ["tcg,tb-size=128"]
    assert "-enable-kvm" not in argv
    assert option(argv, "-m") == ["512"]
    assert option(argv, "-smp") == ["2"]
    assert {"-nodefaults", "-no-user-config", "-no-reboot"} <= set(argv)
    assert option(argv, "-display") == ["none"]
    assert option(argv, "-kernel") == ["/b/vmlinuz"]
    assert option(argv, "-initrd") == ["/b/initrd.img"]
    assert option(argv, "-append") == ["root=LABEL=qvdroot rw console=ttyS0 quiet panic=-1"]
    assert option(argv, "-drive") == [
        "file=/s/overlays/3-42-overlay.qcow2,format=qcow2,if=none,id=root,cache=writeback,"
        "discard=unmap",
        "file=/s/homes/42-data.qcow2,format=qcow2,if=none,id=home,cache=writeback",
    ]
    assert option(argv, "-device") == [
        "virtio-blk-pci,drive=root",
        "virtio-blk-pci,drive=home,serial=qvd-home",
        "virtio-net-pci,netdev=n0,mac=54:52:00:00:00:2a",
    ]
    assert option(argv, "-netdev") == ["tap,id=n0,ifname=qvd42,script=no,downscript=no"]
    assert option(argv, "-fw_cfg") == ["name=opt/org.qvd/identity,file=/r/42/identity.json"]
    assert option(argv, "-qmp") == ["unix:/r/42/qmp.sock,server=on,wait=off"]
    assert option(argv, "-pidfile") == ["/r/42/qemu.pid"]
    assert option(argv, "-runas") == ["qvd-kvm"]
    assert option(argv, "-sandbox") == [
        "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"
    ]
    assert option(argv, "-serial") == ["chardev:console"]
    assert "-daemonize" not in argv  # spawn=deny forbids its fork; the backend detaches it


def test_kvm_uses_the_host_cpu() -> None:
    argv = qemu_argv(dataclasses.replace(PLAN, accel=Accel.KVM))
    assert option(argv, "-cpu") == ["host"]
    assert "-enable-kvm" in argv
    assert "-accel" not in argv


def test_no_home_no_home_disk() -> None:
    argv = qemu_argv(dataclasses.replace(PLAN, home=None))
    assert len(option(argv, "-drive")) == 1
    assert not any("qvd-home" in word for word in argv)


def test_commas_in_paths_cannot_add_options() -> None:
    plan = dataclasses.replace(
        PLAN,
        overlay=Path("/s/x,readonly=off,file=/etc/shadow"),
        identity=Path("/r/a,file=/etc/shadow"),
        qmp=Path("/r/q,server=off"),
    )
    argv = qemu_argv(plan)
    assert option(argv, "-drive")[0].startswith("file=/s/x,,readonly=off,,file=/etc/shadow,format")
    assert option(argv, "-fw_cfg") == ["name=opt/org.qvd/identity,file=/r/a,,file=/etc/shadow"]
    assert option(argv, "-qmp") == ["unix:/r/q,,server=off,server=on,wait=off"]


@pytest.mark.parametrize("cmdline", ["root=/dev/vda\ninit=/bin/sh", "a\x00b", "x" * 3000, "é=1"])
def test_a_kernel_command_line_that_is_not_one_printable_line_is_refused(cmdline: str) -> None:
    with pytest.raises(TerminalBackendError, match="kernel command line"):
        qemu_argv(dataclasses.replace(PLAN, kernel_cmdline=cmdline))


@pytest.mark.parametrize(
    "change", [{"machine": "virt"}, {"memory_mib": 0}, {"vcpus": 0}, {"tb_size_mib": 0}]
)
def test_bad_figures_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(TerminalBackendError):
        qemu_argv(dataclasses.replace(PLAN, **change))  # type: ignore[arg-type]
