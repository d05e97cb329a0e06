"""Per-port anti-spoofing on the node's bridge: which (host device, MAC, IPv4) each VM
port may speak as.

The rules live in the node's ``bridge`` table (``qvd.hkd.network``); this module keeps
its four sets in step with the VMs of the node:

- ``ifaces``: the host-side devices of admitted VM ports; frames from them are checked;
- ``macs``: ``device . MAC``, the only Ethernet source a port may use;
- ``ports``: ``device . MAC . IPv4``, the only IPv4 source and ARP sender a port may use;
- ``chaddrs``: ``device . MAC`` as a number, the only client hardware address its DHCP
  messages to the node may carry (so no VM declines or releases another's lease).

Admitting a port replaces whatever its device had (a device name is reused when a VM
restarts), releasing it removes it; both are idempotent and go through ``nft -f`` as one
transaction, so a port is never half-registered. What the kernel holds is read once,
lazily, so an HKD that restarts carries on with the ports of the VMs it adopts.
(:class:`NftSets` is that bookkeeping; ``qvd.hkd.egress`` keeps its set with it too.)
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

__all__ = [
    "NftSets",
    "Port",
    "PortFilter",
    "PortFilterError",
    "is_device_name",
    "nft",
    "read_ports",
    "read_set",
]

_DEVICE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_SYSCTL = Path("/proc/sys/net/ipv6/conf")
T = TypeVar("T")


class PortFilterError(Exception):
    """nft refused a port change, or a port's facts are not well formed."""


def is_device_name(name: str) -> bool:
    """Whether ``name`` is a network interface name, safe in an nft rule and a /proc
    path (1-15 of A-Z a-z 0-9 _ . -, not ``.`` or ``..``)."""
    return bool(_DEVICE.fullmatch(name)) and name not in (".", "..")


@dataclass(frozen=True, slots=True)
class Port:
    """A VM's port on the bridge: its host-side device, its MAC and its IPv4 address,
    checked here because they are written into an nft transaction and a /proc path."""

    device: str
    mac: str
    address: str

    def __post_init__(self) -> None:
        if not is_device_name(self.device):
            raise PortFilterError(f"not an interface name: {self.device!r}")
        if not _MAC.fullmatch(self.mac) or int(self.mac[:2], 16) & 1:
            raise PortFilterError(f"not a unicast MAC address in lower case: {self.mac!r}")
        try:
            ipaddress.IPv4Address(self.address)
        except ValueError:
            raise PortFilterError(f"not an IPv4 address: {self.address!r}") from None

    def elements(self) -> dict[str, str]:
        """The element of each set, in nft syntax."""
        return {
            "ifaces": f'"{self.device}"',
            "macs": f'"{self.device}" . {self.mac}',
            "ports": f'"{self.device}" . {self.mac} . {self.address}',
            "chaddrs": f'"{self.device}" . 0x{self.mac.replace(":", "")}',
        }


def nft(*argv: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *argv], input=script, capture_output=True, text=True, check=False)


def read_set(family: str, table: str, name: str, width: int) -> list[tuple[str, ...]]:
    """The elements of a set of concatenations of ``width`` parts that the kernel holds
    (unchecked strings); empty without the set."""
    done = nft("-j", "list", "set", family, table, name)
    if done.returncode != 0:
        return []
    found: list[tuple[str, ...]] = []
    for item in json.loads(done.stdout).get("nftables", []):
        for elem in item.get("set", {}).get("elem", []):
            parts = elem.get("concat") if isinstance(elem, dict) else None
            if isinstance(parts, list) and len(parts) == width:
                found.append(tuple(str(part) for part in parts))
    return found


def read_ports(table: str) -> dict[str, Port]:
    """The ports the kernel holds in ``table`` (device → port); empty without the table."""
    found: dict[str, Port] = {}
    for device, mac, address in read_set("bridge", table, "ports", 3):
        try:
            port = Port(device, mac, address)
        except PortFilterError:
            continue
        found[port.device] = port
    return found


def disable_ipv6(device: str) -> bool:
    """Turn IPv6 off on a host device (a second layer under the nft drop); False when
    the device (or IPv6) is not there."""
    if not is_device_name(device):
        raise PortFilterError(f"not an interface name: {device!r}")
    knob = _SYSCTL / device / "disable_ipv6"
    try:
        knob.write_text("1\n")
    except FileNotFoundError:
        return False
    return True


class NftSets(Generic[T]):
    """What the sets of one node table hold per host device (read from the kernel once,
    lazily, and again after nft refused a change), changed by nft transactions; safe
    to share between HKD workers."""

    error: ClassVar[type[PortFilterError]] = PortFilterError

    def __init__(self, table: str) -> None:
        self.table = table
        self._lock = threading.Lock()
        self._known: dict[str, T] | None = None

    def _read(self) -> dict[str, T]:
        raise NotImplementedError

    def _removal(self, device: str, held: T) -> list[str]:
        """The nft lines that take ``held`` of ``device`` out of the sets."""
        raise NotImplementedError

    def _held(self) -> dict[str, T]:
        if self._known is None:
            self._known = self._read()
        return self._known

    def held(self) -> dict[str, T]:
        with self._lock:
            return dict(self._held())

    def release(self, device: str) -> None:
        """Forget what ``device`` had (its VM is gone); nothing when unknown."""
        with self._lock:
            known = self._held()
            old = known.get(device)
            if old is None:
                return
            self._apply(self._removal(device, old))
            del known[device]

    def _delete(self, family: str, name: str, element: str) -> list[str]:
        # add-then-delete: deleting works whether or not the element is still there
        where = f"element {family} {self.table} {name} {{ {element} }}"
        return [f"add {where}", f"delete {where}"]

    def _apply(self, lines: list[str]) -> None:
        if not lines:
            return
        done = nft("-f", "-", script="\n".join(lines) + "\n")
        if done.returncode != 0:
            self._known = None  # re-read what the kernel holds next time
            raise self.error(f"nft: {done.stderr.strip()}")


class PortFilter(NftSets[Port]):
    """The admitted ports of one node table."""

    def _read(self) -> dict[str, Port]:
        return read_ports(self.table)

    def admitted(self) -> dict[str, Port]:
        return self.held()

    def admit(self, port: Port) -> None:
        """Let ``port.device`` speak as ``port.mac`` / ``port.address`` and as nothing
        else; turns IPv6 off on the device when it exists already."""
        with self._lock:
            known = self._held()
            old = known.get(port.device)
            if old != port:
                lines = self._removal(port.device, old) if old is not None else []
                for name, element in port.elements().items():
                    lines.append(f"add element bridge {self.table} {name} {{ {element} }}")
                self._apply(lines)
                known[port.device] = port
        disable_ipv6(port.device)

    def _removal(self, device: str, held: Port) -> list[str]:
        lines: list[str] = []
        for name, element in held.elements().items():
            lines += self._delete("bridge", name, element)
        return lines
