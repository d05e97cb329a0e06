"""The VMA under systemd: its unit, the readiness notification, the boot hand-over.

An image whose ``/etc/qvd/vma.conf`` says ``vma.init = systemd`` boots its own init:
the VMA, started as PID 1 (LXC's ``lxc.init.cmd``, unchanged), execs ``/sbin/init``
before doing anything else, and systemd runs the VMA as ``qvd-vma.service``. A KVM
guest boots systemd directly. The image builder installs the unit with
:func:`install_unit` (the text is :data:`UNIT_TEXT`).

The unit waits for no network: the VMA listens on all addresses, so it answers as
soon as an address arrives (set by LXC before init, or by DHCP in a VM). It tells
systemd it is ready once it listens (``Type=notify``), is restarted if it dies, and
stops on SIGTERM like under any init.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = [
    "INIT_SYSTEMD",
    "INIT_VMA",
    "SYSTEMD_INIT",
    "UNIT_NAME",
    "UNIT_TEXT",
    "booted_by_systemd",
    "install_unit",
    "notify",
]

INIT_VMA = "vma"  # the VMA is the image's init (the default)
INIT_SYSTEMD = "systemd"  # the VMA execs systemd, which runs it as a service
SYSTEMD_INIT = "/sbin/init"
UNIT_NAME = "qvd-vma.service"
UNIT_DIR = "usr/lib/systemd/system"
WANTED_BY = "multi-user.target"

UNIT_TEXT = """\
# The QVD VM agent. Installed by `qvd di build` (qvd.vma.systemd).
[Unit]
Description=QVD VM agent
# no network wait: the agent listens on every address and answers once one is set
After=local-fs.target systemd-tmpfiles-setup.service
Before=multi-user.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=/usr/lib/qvd/bin/qvd-vma
Restart=always
RestartSec=1
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec=30
# it provisions users, mounts the home drive and starts the desktop session
User=root
StandardOutput=journal
StandardError=journal

[Install]
WantedBy=multi-user.target
"""


def install_unit(root: Path) -> Path:
    """Write the unit into the image tree ``root`` and enable it; returns its path."""
    unit = root / UNIT_DIR / UNIT_NAME
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(UNIT_TEXT, encoding="utf-8")
    unit.chmod(0o644)
    wants = root / "etc/systemd/system" / f"{WANTED_BY}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / UNIT_NAME
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(f"/{UNIT_DIR}/{UNIT_NAME}")
    return unit


def booted_by_systemd() -> bool:
    """Whether systemd is this system's init (sd_booted(3))."""
    return os.path.isdir("/run/systemd/system")


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
