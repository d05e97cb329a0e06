"""systemd as the image's init: the VMA as ``qvd-vma.service``, ``vma.init = systemd`` in
``/etc/qvd/vma.conf``, and no unit a desktop does not need.

Used by an LXC tarball whose recipe says ``init = "systemd"`` and by every KVM image; a
VM also gets its network by DHCP (systemd-networkd on any ``en*``/``eth*`` link, DNS
through systemd-resolved). The unit's text comes from the VMA's package when it ships
one (``qvd/vma/qvd-vma.service``), else from here; either way it is part of the image
hash (``layer_files``).
"""

from __future__ import annotations

import os
import time
from importlib import resources
from pathlib import Path
from typing import TextIO

from qvd.di.commands import run_tool
from qvd.di.errors import BuildError
from qvd.di.osstage import chroot
from qvd.di.progress import StepPlan
from qvd.di.recipe import module_files
from qvd.di.rootfiles import replace_file, replace_symlink

__all__ = [
    "MASKED_UNITS",
    "NETWORK_FILE",
    "UNIT_NAME",
    "configure_systemd",
    "layer_files",
    "vma_unit",
]

UNIT_NAME = "qvd-vma.service"
UNIT_DIR = "usr/lib/systemd/system"
NETWORK_FILE = "etc/systemd/network/80-qvd-dhcp.network"

# Until the VMA ships its own unit: the agent as a service, restarted if it dies, its
# output on the console too (the boot log on the serial port shows it start).
_FALLBACK_UNIT = """\
# The QVD VM agent, started by systemd (image init = systemd).
[Unit]
Description=QVD VM agent
After=network.target local-fs.target

[Service]
Type=simple
ExecStart=/usr/lib/qvd/bin/qvd-vma
Restart=always
RestartSec=1
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
"""

# Units a desktop image never needs: logins on consoles (the desktop comes through the
# VMA), package and disk maintenance timers (the image is replaced, not upgraded), the
# first-boot wizard (it would wait for a keyboard on the console: /etc/machine-id is
# empty so that every VM gets its own), and the hardware database rebuild.
MASKED_UNITS = (
    "getty@.service",
    "serial-getty@.service",
    "console-getty.service",
    "container-getty@.service",
    "systemd-firstboot.service",
    "systemd-hwdb-update.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
)

_VM_UNITS = ("systemd-networkd.service", "systemd-resolved.service")

_NETWORK = """\
# Written by `qvd di build`: every virtual NIC takes its address by DHCP from the node
# (static lease by MAC). No IPv6 autoconfiguration; the host name comes from QVD.
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
IPv6AcceptRA=no
LinkLocalAddressing=no

[DHCPv4]
ClientIdentifier=mac
UseHostname=no
"""


def vma_unit() -> str:
    """The text of ``qvd-vma.service``: the VMA's own if it ships one."""
    shipped = resources.files("qvd.vma") / UNIT_NAME
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    return _FALLBACK_UNIT


def layer_files() -> list[tuple[str, bytes]]:
    """What an image with systemd as init depends on beyond the recipe (for its hash)."""
    return [*module_files(("sysinit.py", "rootfiles.py")), (UNIT_NAME, vma_unit().encode())]


def configure_systemd(root: Path, plan: StepPlan, log: TextIO, *, vm: bool) -> None:
    """Make systemd the init of the root at ``root`` and the VMA its service."""
    plan.report("init", 0.0, f"systemd as init, {UNIT_NAME}")
    if not (root / "sbin/init").exists() and not (root / "usr/sbin/init").exists():
        raise BuildError("init", "the image has no /sbin/init: install systemd-sysv")
    replace_file(root / UNIT_DIR / UNIT_NAME, vma_unit())
    units = [UNIT_NAME, *(_VM_UNITS if vm else ())]
    # First boot (empty machine-id) applies presets: enable only what we enable here.
    preset = "".join(f"enable {unit}\n" for unit in units) + "disable *\n"
    replace_file(root / "etc/systemd/system-preset/00-qvd.preset", preset)
    if vm:
        replace_file(root / NETWORK_FILE, _NETWORK)
        replace_symlink(root / "etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")
    run_tool(chroot(root, "systemctl", "enable", *units), step="init", log=log)
    run_tool(chroot(root, "systemctl", "mask", *MASKED_UNITS), step="init", log=log)
    plan.report("init", 0.6, "vma.init = systemd, machine-id")
    conf = root / "etc/qvd/vma.conf"
    written = conf.read_text(encoding="utf-8") if conf.is_file() and not conf.is_symlink() else ""
    replace_file(conf, written + "vma.init = systemd\n")
    # Each VM (each container) gets its own machine id at boot, never the image's.
    replace_file(root / "etc/machine-id", "", 0o444)
    replace_symlink(root / "var/lib/dbus/machine-id", "/etc/machine-id")
    # /etc and /var are up to date with /usr: no ldconfig and catalog rebuild at boot.
    now = time.time()
    for rel in ("etc/.updated", "var/.updated"):
        replace_file(root / rel, f"# written by qvd di build\nTIMESTAMP_NSEC={int(now * 1e9)}\n")
        os.utime(root / rel, (now, now))
    plan.report("init", 1.0, "systemd configured")
