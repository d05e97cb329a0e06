"""The VMA under systemd: its unit, the readiness notification, the boot hand-over.

An image whose ``/etc/qvd/vma.conf`` says ``vma.init = systemd`` boots its own init:
the VMA, started as PID 1 (LXC's ``lxc.init.cmd``, unchanged), execs ``/sbin/init``
before doing anything else, and systemd runs the VMA as ``qvd-vma.service``. A KVM
guest boots systemd directly. The unit is the package file ``qvd-vma.service``
(:func:`unit_text`); the image builder installs and enables it.

The unit waits for no network: the VMA listens on all addresses, so it answers as
soon as an address arrives (set by LXC before init, or by DHCP in a VM). It tells
systemd it is ready once it listens (``Type=notify``), is restarted if it dies, and
stops on SIGTERM like under any init.
"""

from __future__ import annotations

import os
import socket
from importlib import resources

__all__ = [
    "INIT_SYSTEMD",
    "INIT_VMA",
    "SYSTEMD_INIT",
    "UNIT_NAME",
    "booted_by_systemd",
    "in_container",
    "notify",
    "unit_text",
]

INIT_VMA = "vma"  # the VMA is the image's init (the default)
INIT_SYSTEMD = "systemd"  # the VMA execs systemd, which runs it as a service
SYSTEMD_INIT = "/sbin/init"
UNIT_NAME = "qvd-vma.service"


def unit_text() -> str:
    """The text of ``qvd-vma.service`` (the package file of that name)."""
    return (resources.files("qvd.vma") / UNIT_NAME).read_text(encoding="utf-8")


def booted_by_systemd() -> bool:
    """Whether systemd is this system's init (sd_booted(3))."""
    return os.path.isdir("/run/systemd/system")


def in_container() -> bool:
    """Whether this system is a container: LXC gives its init ``container=…`` and
    systemd in a container writes ``/run/systemd/container``."""
    container = os.environ.get("container")  # noqa: SIM112 -- its name, lower case
    return bool(container) or os.path.exists("/run/systemd/container")


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd if it asked for notifications."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True
