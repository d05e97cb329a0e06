"""The VM's tap device: ``ip tuntap`` on the node's bridge, IPv6 off.

The tap is made by root and belongs to nobody (no ``user``): only a root process may
attach to it, and QEMU does so before it drops its privileges. Its name is the VM's
host device (``qvd<vm_id>``), so the node's anti-spoofing rules, keyed by host device,
apply to it as they apply to a container's veth.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from qvd.hkd.backends.base import BackendError, TerminalBackendError
from qvd.hkd.backends.hostnet import NET, host_devices

__all__ = ["create_tap", "delete_tap", "list_taps", "tap_exists"]

_DEVICE = re.compile(r"[A-Za-z0-9_-]{1,15}")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _check(name: str) -> str:
    if not _DEVICE.fullmatch(name):
        raise TerminalBackendError(f"not an interface name: {name!r}")
    return name


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, env=_ENV, check=False)
    if check and done.returncode != 0:
        raise BackendError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def tap_exists(name: str) -> bool:
    return (NET / _check(name)).exists()


def _is_tap(name: str) -> bool:
    return (NET / name / "tun_flags").exists()


def create_tap(name: str, bridge: str) -> None:
    """A fresh tap ``name`` on ``bridge``, up, with IPv6 off; an old device of that
    name (a tap left by a dead QEMU) is replaced."""
    _check(name)
    _check(bridge)
    if not (NET / bridge / "bridge").is_dir():
        raise BackendError(f"bridge {bridge} does not exist on this node")
    if tap_exists(name):
        delete_tap(name)
    _ip("tuntap", "add", "dev", name, "mode", "tap")
    try:
        knob = Path("/proc/sys/net/ipv6/conf") / name / "disable_ipv6"
        if knob.exists():
            knob.write_text("1\n")
        _ip("link", "set", "dev", name, "master", bridge)
        _ip("link", "set", "dev", name, "up")
    except BaseException:
        delete_tap(name)
        raise


def delete_tap(name: str) -> None:
    """Remove the device ``name`` if it is a tap (never anything else)."""
    if tap_exists(name) and _is_tap(name):
        _ip("tuntap", "del", "dev", name, "mode", "tap", check=False)
        if tap_exists(name):
            _ip("link", "del", "dev", name)


def list_taps(prefix: str) -> dict[int, str]:
    """Taps named ``<prefix><vm_id>`` on this host: vm_id -> device."""
    return {vm_id: dev for vm_id, dev in host_devices(prefix).items() if _is_tap(dev)}
