"""The VM stage of a KVM image, cached on top of the OS stage: what a virtual machine
needs to boot the recipe's root.

It installs systemd as init, udev, kmod, e2fsprogs (the VMA formats the home drive),
dbus (logind handles QEMU's power button), systemd-resolved and the recipe's kernel
(``Recipe.kernel``: Debian's cloud kernel by default, virtio drivers and no USB; the
generic ``linux-image-amd64`` for guests that attach USB devices over USB/IP); keeps only
the kernel modules a VM uses (virtio, network, file systems, fw_cfg, ACPI, input, crypto,
USB/IP's vhci-hcd where the kernel has it, and their dependencies);
makes a small initrd (``MODULES=list``: virtio_pci, virtio_blk, ext4), and lays out the
boot files every KVM image has: ``/boot/qvd/vmlinuz``, ``/boot/qvd/initrd.img`` and
``/boot/qvd/cmdline``. The root file system is labelled ``qvdroot`` (``qvd.di.qcow2``).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from qvd.di.commands import mounted, run_tool
from qvd.di.errors import BuildError
from qvd.di.osstage import _no_services, chroot
from qvd.di.progress import AptMeter, StepPlan
from qvd.di.recipe import DEFAULT_KERNEL, Recipe, base_hash, module_files
from qvd.di.rootfiles import replace_file, replace_symlink

__all__ = [
    "BOOT_DIR",
    "CMDLINE",
    "INITRD_MODULES",
    "KEEP_MODULES",
    "KERNEL_PACKAGE",
    "ROOT_LABEL",
    "VM_PACKAGES",
    "VM_STAGE_STEPS",
    "build_vm_stage",
    "host_resolver",
    "modules_to_keep",
    "vm_stage_key",
]

ROOT_LABEL = "qvdroot"
BOOT_DIR = "boot/qvd"
CMDLINE = f"root=LABEL={ROOT_LABEL} rw console=ttyS0 quiet"
# The cloud flavour: virtio and fw_cfg as modules, ext4 built in, no hardware firmware.
KERNEL_PACKAGE = DEFAULT_KERNEL
VM_PACKAGES = (
    "systemd-sysv",
    "udev",
    "kmod",
    "e2fsprogs",
    "dbus",
    "systemd-resolved",
    "initramfs-tools",
)
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4")
# Module paths (under lib/modules/<version>/kernel/) a VM keeps, with their dependencies.
KEEP_MODULES = (
    "arch/x86/crypto/",
    "crypto/",
    "lib/",
    "block/",
    "drivers/virtio/",
    "drivers/block/virtio_blk.ko",
    "drivers/block/loop.ko",
    "drivers/net/virtio_net.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/tun.ko",
    "drivers/net/veth.ko",
    "drivers/net/dummy.ko",
    "drivers/char/",
    "drivers/firmware/",
    "drivers/acpi/",
    "drivers/input/",
    "drivers/watchdog/",
    "fs/",
    "net/core/",
    "net/ipv4/",
    "net/ipv6/",
    "net/packet/",
    "net/unix/",
    "net/sched/",
    "net/9p/",
    "net/vmw_vsock/",
    # USB/IP's importing side (the generic kernel only; usbcore comes as a dependency)
    "drivers/usb/usbip/usbip-core.ko",
    "drivers/usb/usbip/vhci-hcd.ko",
)
# File systems a desktop VM has no use for (the largest of fs/).
_DROP_FS = ("btrfs", "xfs", "ocfs2", "gfs2", "nfs", "nfsd", "ceph", "smb", "cifs", "f2fs",
            "ntfs3", "jfs", "reiserfs", "nilfs2", "ubifs", "orangefs", "dlm", "afs",
            "coda", "lockd", "nfs_common", "cachefiles", "fscache", "netfs",
            "ksmbd", "erofs", "hfs", "hfsplus", "ufs", "udf", "minix", "omfs", "befs",
            "efs", "qnx4", "qnx6", "sysv", "vboxsf", "zonefs", "romfs", "cramfs",
            "quota", "exfat")  # fmt: skip
VM_STAGE_STEPS = (("kernel", 20.0), ("initrd", 5.0), ("vm-stage", 6.0))


def vm_stage_key(recipe: Recipe) -> str:
    """Hash of the VM stage: the OS stage it sits on and this module's source."""
    digest = hashlib.sha256(base_hash(recipe).encode())
    for name, content in module_files(("vmstage.py", "rootfiles.py")):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    if recipe.kernel != KERNEL_PACKAGE:  # the default kernel keeps the keys it had
        digest.update(b"kernel\0" + recipe.kernel.encode())
    return digest.hexdigest()[:16]


def modules_to_keep(modules_dep: str, keep: Iterable[str] = KEEP_MODULES) -> set[str]:
    """The modules (paths as in ``modules.dep``) matching ``keep``, with every module
    they depend on."""
    deps: dict[str, list[str]] = {}
    for line in modules_dep.splitlines():
        module, sep, rest = line.partition(":")
        if sep:
            deps[module.strip()] = rest.split()
    prefixes = tuple(f"kernel/{p}" for p in keep)
    dropped = tuple(f"kernel/fs/{fs}/" for fs in _DROP_FS)
    todo = [m for m in deps if m.startswith(prefixes) and not m.startswith(dropped)]
    kept: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in kept:
            kept.add(module)
            todo.extend(deps.get(module, ()))
    return kept


@contextlib.contextmanager
def host_resolver(root: Path) -> Iterator[None]:
    """The host's resolver inside the root while apt runs; the image's afterwards."""
    resolv = root / "etc/resolv.conf"
    was_link = resolv.is_symlink()
    link_target = str(resolv.readlink()) if was_link else ""
    saved = "" if was_link or not resolv.is_file() else resolv.read_text(encoding="utf-8")
    replace_file(resolv, Path("/etc/resolv.conf").read_text(encoding="utf-8"))
    try:
        yield
    finally:
        if was_link:
            replace_symlink(resolv, link_target)
        else:
            replace_file(resolv, saved)


def _kernel_version(root: Path) -> str:
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError("kernel", f"expected one kernel in /boot, found {kernels or 'none'}")
    return kernels[0]


def _install(root: Path, kernel: str, plan: StepPlan, log: TextIO) -> None:
    meter = AptMeter()

    def seen(line: str) -> None:
        fraction = meter.feed(line)
        if fraction is not None:
            plan.report("kernel", 0.1 + 0.7 * fraction, line.strip()[:70])

    # The first initrd (the kernel's postinst) is already a small one.
    replace_file(root / "etc/initramfs-tools/conf.d/qvd.conf", "MODULES=list\nCOMPRESS=gzip\n")
    # Root on the labelled disk, never checked at boot (each VM's overlay is fresh).
    replace_file(root / "etc/fstab", f"LABEL={ROOT_LABEL}\t/\text4\trw,noatime\t0\t0\n")
    with (
        host_resolver(root),
        _no_services(root),
        mounted("proc", root / "proc", "proc", step="kernel"),
    ):
        plan.report("kernel", 0.0, "apt-get update")
        run_tool(chroot(root, "apt-get", "update"), step="kernel", log=log)
        run_tool(
            chroot(root, "apt-get", "install", "-y", "--no-install-recommends",
                   "-o", "Dpkg::Use-Pty=0", *VM_PACKAGES, kernel),
            step="kernel", log=log, on_line=seen,
        )  # fmt: skip
        run_tool(chroot(root, "apt-get", "clean"), step="kernel", log=log)


def _strip_modules(root: Path, version: str, plan: StepPlan, log: TextIO) -> None:
    plan.report("kernel", 0.85, "keeping the modules a VM uses")
    tree = root / "lib/modules" / version
    keep = modules_to_keep((tree / "modules.dep").read_text(encoding="utf-8"))
    for module in (tree / "kernel").rglob("*.ko*"):
        if str(module.relative_to(tree)) not in keep:
            module.unlink()
    for folder in sorted((tree / "kernel").rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    run_tool(chroot(root, "depmod", "-a", version), step="kernel", log=log)
    # No firmware and no hardware database: a VM's devices are virtio.
    for rel in ("lib/firmware", "usr/lib/firmware", "usr/lib/udev/hwdb.d", "etc/udev/hwdb.d"):
        target = root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
    (root / "usr/lib/udev/hwdb.bin").unlink(missing_ok=True)
    plan.report("kernel", 1.0, f"kernel {version}")


def _make_initrd(root: Path, version: str, plan: StepPlan, log: TextIO) -> None:
    plan.report("initrd", 0.0, "small initrd (MODULES=list)")
    replace_file(
        root / "etc/initramfs-tools/modules",
        "# Written by `qvd di build`: the drivers that reach the root disk.\n"
        + "".join(f"{name}\n" for name in INITRD_MODULES),
    )
    with mounted("proc", root / "proc", "proc", step="initrd"):
        run_tool(chroot(root, "update-initramfs", "-u", "-k", version), step="initrd", log=log)
    boot = root / BOOT_DIR
    boot.mkdir(parents=True, exist_ok=True)
    (root / "boot" / f"vmlinuz-{version}").rename(boot / "vmlinuz")
    (root / "boot" / f"initrd.img-{version}").rename(boot / "initrd.img")
    for stale in (root / "boot").glob("initrd.img-*"):
        stale.unlink()
    for link in ("vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
        for where in (root, root / "boot"):
            if (where / link).is_symlink():
                (where / link).unlink()
    replace_file(boot / "cmdline", CMDLINE + "\n")
    for name in ("vmlinuz", "initrd.img"):
        (boot / name).chmod(0o644)
    plan.report("initrd", 1.0, f"/{BOOT_DIR}: vmlinuz, initrd.img, cmdline")


def _remove_again(recipe: Recipe, root: Path) -> None:
    """The recipe's removals, for what the VM packages brought (docs, apt lists)."""
    for rel in recipe.remove:
        target = root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            target.mkdir(mode=0o755)
        elif target.exists() or target.is_symlink():
            target.unlink()


def build_vm_stage(recipe: Recipe, root: Path, plan: StepPlan, log: TextIO) -> None:
    """Turn the OS stage at ``root`` into the VM stage (in place)."""
    _install(root, recipe.kernel, plan, log)
    version = _kernel_version(root)
    _strip_modules(root, version, plan, log)
    _make_initrd(root, version, plan, log)
    _remove_again(recipe, root)
