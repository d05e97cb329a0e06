"""What an all-in-one node needs from its machine for its hypervisor: the Debian
packages ``qvd up`` installs when they are missing, the format of the demo image it
builds, and whether the demo desktop is booted before the node says it is up (a
virtual machine boots a kernel: tens of seconds under TCG, so ``qvd up`` boots it and
says so rather than leave the first client waiting without a word).

``qvd.sh`` installs the packages every node needs; only a hypervisor's own are here.
This table and the backend loader are the only places outside the backends that name
a hypervisor."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HostNeeds", "PackageError", "ensure_packages", "host_needs", "missing_packages"]


class PackageError(Exception):
    """A package the node needs is missing and cannot be installed here."""


@dataclass(frozen=True, slots=True)
class HostNeeds:
    packages: tuple[str, ...]  # Debian packages of the hypervisor (beyond qvd.sh's)
    image_format: str  # the demo image's format (qvd.di's: "lxc-tar-zst", "qcow2")
    boots_slowly: bool  # the demo desktop is booted (and waited for) by `qvd up`
    demo_memory_mb: int = 0  # at least this much memory for the demo OSF


_NEEDS = {
    "lxc": HostNeeds(packages=(), image_format="lxc-tar-zst", boots_slowly=False),
    # QEMU, qemu-img (overlays, homes), the per-node DHCP server; e2fsprogs for the
    # builder's mkfs.ext4 -d of the root disk
    "kvm": HostNeeds(
        packages=("qemu-system-x86", "qemu-utils", "dnsmasq-base", "e2fsprogs"),
        image_format="qcow2",
        boots_slowly=True,
        demo_memory_mb=1024,  # a kernel, systemd and the guest's desktop (Xfce)
    ),
}


def host_needs(hypervisor: str) -> HostNeeds:
    """The needs of ``vm.hypervisor``; an unknown name needs nothing here (the HKD's
    backend loader refuses it with the list of known ones)."""
    return _NEEDS.get(hypervisor, _NEEDS["lxc"])


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    """Those of ``packages`` that dpkg does not have installed."""
    missing = []
    for package in packages:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        if "install ok installed" not in status:
            missing.append(package)
    return missing


def ensure_packages(packages: tuple[str, ...], what: str, say: Callable[[str], None]) -> None:
    """Install the missing ones of ``packages`` with apt-get (root only); says what it
    installs, or raises PackageError with the command to run."""
    missing = missing_packages(packages)
    if not missing:
        return
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        raise PackageError(
            f"{what} needs the Debian packages {', '.join(missing)}: run `{' '.join(command)}` "
            "as root, or run this as root"
        )
    say(f"installing Debian packages for {what}: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], command):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise PackageError(f"`{' '.join(argv)}` failed: {' / '.join(tail) or done.returncode}")
