"""Is a VM address reached directly (pure parse of ``ip -o route get``)?

The network rule: the L7R connects only to loopback or to addresses on a link of this
machine (a node bridge or a namespace), never through a gateway, so a wrong
``vm_address`` in the database cannot make it talk to the outside.
"""

from __future__ import annotations

import ipaddress

__all__ = ["route_problem"]

_REFUSED = ("unreachable", "prohibit", "blackhole", "throw")


def route_problem(address: str, route_get_output: str) -> str | None:
    """Why ``address`` must not be connected to (None: it may)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if ip.is_loopback:
        return None
    words = route_get_output.split()
    if not words:
        return f"no route to {address}"
    if words[0] in _REFUSED:
        return f"the route to {address} is {words[0]}"
    if "via" in words:
        return f"{address} is reached through a gateway ({route_get_output.strip()})"
    if "dev" not in words:
        return f"no device route to {address}"
    return None
