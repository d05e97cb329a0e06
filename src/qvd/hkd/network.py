"""The node's side of the VM network: its bridge, its address, a guard route and the
firewall (reference §2.7, without NAT and without a route out).

- The VM range (``ip.start`` … broadcast-1) always has an ``unreachable`` route with a
  high metric: while the bridge is up its connected route wins; when the bridge is
  down or gone, traffic to VM addresses is refused instead of leaking out of the
  default gateway.
- The bridge carries the node's address (in the host range, below ``ip.start``).
- nftables: VMs cannot talk to each other, cannot open connections to any node, and
  only answer on the VMA and nxagent ports; nothing from VMs is routed. The inet
  forward chain repeats the bridge rules because, where ``br_netfilter`` is loaded,
  bridged frames (a VM answering another node's L7R) pass through it too.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass

__all__ = ["GUARD_METRIC", "NetworkError", "NodeNetwork"]

GUARD_METRIC = 4242


class NetworkError(Exception):
    """The node's network cannot be set up as configured."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True, slots=True)
class NodeNetwork:
    bridge: str
    host_address: str
    network: ipaddress.IPv4Network
    ip_start: ipaddress.IPv4Address
    vma_port: int
    x_port: int
    firewall: bool = True

    @property
    def vm_range(self) -> str:
        return f"{self.ip_start}-{self.network.broadcast_address - 1}"

    @property
    def table(self) -> str:
        return f"qvd_{self.bridge}".replace("-", "_")

    def check(self) -> None:
        """The node's address must sit in the host part of the VM network."""
        address = ipaddress.IPv4Address(self.host_address)
        if address not in self.network:
            raise NetworkError(
                f"this node's address {address} (hosts.address) is outside the VM network "
                f"{self.network} (vm.network.ip.start / vm.network.netmask)"
            )
        if not self.network.network_address < address < self.ip_start:
            raise NetworkError(
                f"this node's address {address} must lie between {self.network.network_address}"
                f" and vm.network.ip.start {self.ip_start} (VM addresses start there)"
            )

    def conflicts(self) -> list[str]:
        """Routes of this host that overlap the VM network and are not this node's own
        (its bridge's, or its guard route): using the network would hijack them."""
        found: list[str] = []
        out = _ip("-4", "-o", "route", "show", "table", "all", check=False).stdout
        for line in out.splitlines():
            words = line.split()
            if not words or words[0] in ("local", "broadcast", "multicast"):
                continue
            dest = words[1] if words[0] in ("unreachable", "blackhole", "prohibit") else words[0]
            if dest == "default":
                continue
            try:
                net = ipaddress.IPv4Network(dest, strict=False)
            except ValueError:
                continue
            ours = f"dev {self.bridge} " in f"{line} " or (
                words[0] == "unreachable" and f"metric {GUARD_METRIC}" in line
            )
            if net.overlaps(self.network) and not ours:
                found.append(line.strip())
        return found

    def ensure(self) -> None:
        """Create or repair the guard route, the bridge, its address and the firewall."""
        self.check()
        clash = self.conflicts()
        if clash:
            raise NetworkError(
                f"the VM network {self.network} overlaps a route of this host ({clash[0]}): "
                "choose another vm.network.ip.start / vm.network.netmask"
            )
        _ip("route", "replace", "unreachable", str(self.network), "metric", str(GUARD_METRIC))
        if _ip("link", "show", self.bridge, check=False).returncode != 0:
            _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")
        cidr = f"{self.host_address}/{self.network.prefixlen}"
        if cidr not in _ip("-o", "addr", "show", "dev", self.bridge).stdout:
            _ip("addr", "add", cidr, "dev", self.bridge)
        if self.firewall:
            self._apply_firewall()

    def _ruleset(self) -> str:
        vms, br, t = self.vm_range, self.bridge, self.table
        ports = f"{{ {self.vma_port}, {self.x_port} }}"
        return f"""
table bridge {t}
delete table bridge {t}
table inet {t}
delete table inet {t}
table bridge {t} {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    ip saddr {vms} ip daddr {vms} drop
    ip saddr {vms} tcp sport {ports} accept
    ip saddr {vms} drop
  }}
}}
table inet {t} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "{br}" ip saddr {vms} ct state established,related accept
    iifname "{br}" ip saddr {vms} drop
  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname "{br}" ip saddr {vms} tcp sport {ports} accept
    iifname "{br}" ip saddr {vms} drop
  }}
}}
"""

    def _apply_firewall(self) -> None:
        done = subprocess.run(
            ["nft", "-f", "-"], input=self._ruleset(), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise NetworkError(f"nft: {done.stderr.strip()}")

    def remove(self, *, guard: bool = False) -> None:
        """Remove the firewall tables and the bridge, and the guard route if asked
        (when the whole node is being taken down, e.g. at the end of ``qvd up``)."""
        for family in ("bridge", "inet"):
            subprocess.run(
                ["nft", "delete", "table", family, self.table], capture_output=True, check=False
            )
        _ip("link", "del", self.bridge, check=False)
        if guard:
            route = ("route", "del", "unreachable", str(self.network))
            _ip(*route, "metric", str(GUARD_METRIC), check=False)
