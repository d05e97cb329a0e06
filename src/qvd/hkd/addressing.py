"""VM network addressing (reference §2.7): prefix, MAC from IP, interface names."""

from __future__ import annotations

import ipaddress

__all__ = ["host_device", "mac_for", "prefix_length", "vm_network"]


def prefix_length(netmask: str) -> int:
    """``255.255.0.0`` or ``16`` → 16."""
    text = netmask.strip()
    if text.isdigit():
        value = int(text)
        if not 0 < value <= 32:
            raise ValueError(f"netmask prefix {text} is out of range")
        return value
    return ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen


def vm_network(ip_start: str, netmask: str) -> ipaddress.IPv4Network:
    """The VM network: ``ip.start`` masked by the netmask."""
    return ipaddress.IPv4Network(f"{ip_start}/{prefix_length(netmask)}", strict=False)


def mac_for(address: str, prefix: str = "54:52:00") -> str:
    """MAC = prefix + the last three octets of the IPv4 address, in hex."""
    octets = ipaddress.IPv4Address(address).packed[1:]
    return prefix.lower() + "".join(f":{o:02x}" for o in octets)


def host_device(prefix: str, vm_id: int) -> str:
    """Host-side interface of a VM (``qvd10000``), within the 15-character limit."""
    name = f"{prefix}{vm_id}"
    if len(name) > 15:
        raise ValueError(f"interface name {name!r} is longer than 15 characters")
    return name
