"""VM addresses: the lowest free one of the VM network, from ``vm.network.ip.start``
up to the last address before the broadcast address (QVD took the highest).

One rule for whoever gives a VM an address without being told one: the API's
``vm_create``, the L7R's ``auto`` provisioning and ``qvd up``'s demo desktop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container

from sqlalchemy import Connection, text

__all__ = ["first_free_ip", "free_vm_ip"]


def first_free_ip(start: str, netmask: str, used: Container[str]) -> str | None:
    """The lowest address from ``start`` in its network that is not in ``used``."""
    network = ipaddress.IPv4Network(f"{start}/{netmask}", strict=False)
    candidate = ipaddress.IPv4Address(start)
    while candidate in network and candidate != network.broadcast_address:
        if str(candidate) not in used:
            return str(candidate)
        candidate += 1
    return None


def free_vm_ip(conn: Connection, start: str, netmask: str) -> str | None:
    """The lowest address no VM has (``None``: the network is full). Two callers that
    must not pick the same one lock ``vms`` first."""
    used = set(conn.execute(text("SELECT ip FROM vms WHERE ip IS NOT NULL")).scalars())
    return first_free_ip(start, netmask, used)
