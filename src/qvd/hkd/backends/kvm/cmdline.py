"""QEMU's command line for one VM, as an argument list (never a shell string).

Everything QEMU needs is in a :class:`QemuPlan`, resolved by the backend; ``qemu_argv``
only turns it into words. Values inside QEMU's ``key=value,...`` option lists have
their commas doubled (QEMU's escape), so no path can add an option. The kernel command
line is the image's own (``/boot/qvd/cmdline``) plus what this module adds; nothing of
the VM's name or owner reaches it. The secret never appears: it is in the identity
file QEMU reads through fw_cfg.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.kvm.accel import Accel

__all__ = [
    "CONSOLE_BYTES",
    "HOME_SERIAL",
    "IDENTITY_FW_CFG",
    "MACHINES",
    "QEMU",
    "QemuPlan",
    "check_kernel_cmdline",
    "qemu_argv",
]

QEMU = "qemu-system-x86_64"
MACHINES = frozenset({"pc", "q35"})
HOME_SERIAL = "qvd-home"  # the guest sees /dev/disk/by-id/virtio-qvd-home
IDENTITY_FW_CFG = "opt/org.qvd/identity"
CONSOLE_BYTES = 256 * 1024  # the serial console's ring buffer (read through QMP)
# what the backend adds to the image's kernel arguments: a panic reboots at once, and
# -no-reboot turns a reboot into QEMU's exit (a dead VM, not a hung one)
EXTRA_KERNEL_ARGS = "panic=-1"
_MAX_CMDLINE = 2048
_SANDBOX = "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class QemuPlan:
    vm_id: int
    accel: Accel
    tb_size_mib: int  # TCG translation cache
    machine: str  # pc or q35
    memory_mib: int
    vcpus: int
    kernel: Path
    initrd: Path
    kernel_cmdline: str  # the image's own
    overlay: Path  # the root disk (qcow2 backed by the DI)
    home: Path | None  # the home disk (qcow2), None: no persistent home
    tap: str
    mac: str
    identity: Path  # JSON read by the guest through fw_cfg
    qmp: Path
    pidfile: Path
    runas: str


def check_kernel_cmdline(text: str) -> str:
    """The image's kernel arguments, refused if they are not one line of printable
    ASCII of reasonable length (they come from a DI)."""
    line = text.strip()
    if len(line) > _MAX_CMDLINE or any(not (32 <= ord(c) < 127) for c in line):
        raise TerminalBackendError(
            "the image's kernel command line (/boot/qvd/cmdline) is not one line of "
            f"printable ASCII of at most {_MAX_CMDLINE} characters"
        )
    return line


def _value(text: str | Path) -> str:
    """A value inside a QEMU option list: commas doubled."""
    return str(text).replace(",", ",,")


def qemu_argv(plan: QemuPlan) -> list[str]:
    if plan.machine not in MACHINES:
        raise TerminalBackendError(f"vm.kvm.machine = {plan.machine!r}: expected pc or q35")
    if plan.memory_mib <= 0 or plan.vcpus <= 0 or plan.tb_size_mib <= 0:
        raise TerminalBackendError(
            f"VM {plan.vm_id}: memory, vCPUs and the TCG cache must be positive"
        )
    append = f"{check_kernel_cmdline(plan.kernel_cmdline)} {EXTRA_KERNEL_ARGS}".strip()
    argv = [
        QEMU,
        "-name", f"qvd-{plan.vm_id}",
        "-no-user-config", "-nodefaults", "-display", "none", "-no-reboot",
        "-machine", plan.machine,
    ]  # fmt: skip
    if plan.accel is Accel.KVM:
        argv += ["-enable-kvm", "-cpu", "host"]
    else:
        argv += ["-accel", f"tcg,tb-size={plan.tb_size_mib}"]
    argv += [
        "-m", str(plan.memory_mib),
        "-smp", str(plan.vcpus),
        "-chardev", f"ringbuf,id=console,size={CONSOLE_BYTES}",
        "-serial", "chardev:console",
        "-kernel", str(plan.kernel),
        "-initrd", str(plan.initrd),
        "-append", append,
        "-drive", f"file={_value(plan.overlay)},format=qcow2,if=none,id=root,"
                  "cache=writeback,discard=unmap",
        "-device", "virtio-blk-pci,drive=root",
    ]  # fmt: skip
    if plan.home is not None:
        argv += [
            "-drive", f"file={_value(plan.home)},format=qcow2,if=none,id=home,cache=writeback",
            "-device", f"virtio-blk-pci,drive=home,serial={HOME_SERIAL}",
        ]  # fmt: skip
    argv += [
        "-netdev", f"tap,id=n0,ifname={_value(plan.tap)},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={_value(plan.mac)}",
        "-fw_cfg", f"name={IDENTITY_FW_CFG},file={_value(plan.identity)}",
        "-qmp", f"unix:{_value(plan.qmp)},server=on,wait=off",
        "-pidfile", str(plan.pidfile),
        "-runas", plan.runas,
        # -runas drops privileges after the sandbox is in place, so set*id must be
        # allowed; once QEMU runs as the unprivileged user it can never regain root
        "-sandbox", _SANDBOX,
    ]  # fmt: skip
    return argv
