"""The host side of the VMs' network devices, the same for every backend: a VM's
device is ``<prefix><vm_id>`` (a container's veth, a virtual machine's tap), as the
HKD names it in :class:`~qvd.hkd.backends.base.NetworkSpec`."""

from __future__ import annotations

from pathlib import Path

__all__ = ["NET", "host_devices"]

NET = Path("/sys/class/net")


def host_devices(prefix: str) -> dict[int, str]:
    """Devices named ``<prefix><vm_id>`` on this host (in this network namespace):
    vm_id -> device."""
    found: dict[int, str] = {}
    if not NET.is_dir():
        return found
    for entry in NET.iterdir():
        rest = entry.name[len(prefix) :]
        if entry.name.startswith(prefix) and rest.isdigit():
            found[int(rest)] = entry.name
    return found
