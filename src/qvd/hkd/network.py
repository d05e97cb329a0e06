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
- Anti-spoofing per bridge port (``qvd.hkd.ports`` keeps the sets): a VM port speaks
  only IPv4 and ARP, with its own MAC as Ethernet source, its own address as IPv4
  source and as ARP sender. So no VM can claim the node's address or another VM's,
  and no VM sends IPv6 (nor VLAN tags, nor any other protocol) to anyone. IPv6 is
  also dropped on the bridge at the node's input, and turned off on the bridge and on
  each VM's host device (a second layer).
- DHCP (``dhcp``, the node's dnsmasq): a port may ask from 0.0.0.0 to the broadcast
  address with its own MAC, and renew from its own address, to the node only; every
  DHCP message of a port names the port's own MAC as its client, so no VM can decline
  or release another VM's lease. With ``dns``, VMs may query the node's address on
  port 53. Nothing else of the node opens to the VMs.
- A VM network that overlaps a route or an address of this host (its LAN, another
  node network of the project) is refused: the node does not start.
- A node that died without its clean-up leaves its tables behind, and VM ports are
  named by VM id: a later node's port could carry a name a dead table still filters
  with another MAC. Each node removes, before it writes its own, every project table
  whose bridge no longer exists (a living node makes its bridge before its tables and
  removes its tables before its bridge, so only a dead node's tables are swept).
- Egress (optional, ``qvd.hkd.egress``): when the node has it, its set, forward rules
  and NAT chain are part of the same ``inet`` table, so they come and go with it in
  one transaction; without it nothing from a VM is routed.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import subprocess
from dataclasses import dataclass

from qvd.hkd.egress import EgressRules, enable_forwarding, read_allowed
from qvd.hkd.ports import Port, disable_ipv6, is_device_name, nft, read_ports

__all__ = ["GUARD_METRIC", "NetworkError", "NodeNetwork", "sweep_dead_tables"]

log = logging.getLogger(__name__)

GUARD_METRIC = 4242
# a DHCP message's client hardware address: 48 bits, 8 (UDP) + 28 bytes into it
_CHADDR = "@th,288,48"


class NetworkError(Exception):
    """The node's network cannot be set up as configured."""


def _table_of(bridge: str) -> str:
    return f"qvd_{bridge}".replace("-", "_")


def sweep_dead_tables() -> list[str]:
    """Delete the project's nftables tables whose bridge is gone (a dead node's);
    the tables removed, as ``family name``."""
    done = nft("list", "tables")
    if done.returncode != 0:
        return []
    # the devices of this thread's network namespace (a node may run in one it entered:
    # /sys/class/net would show the namespace sysfs was mounted in)
    alive = {_table_of(device) for _, device in socket.if_nameindex()}
    swept = []
    for line in done.stdout.splitlines():
        match line.split():
            case ["table", ("bridge" | "inet") as family, name] if (
                name.startswith("qvd_") and name not in alive
            ):
                if nft("delete", "table", family, name).returncode == 0:
                    swept.append(f"{family} {name}")
            case _:
                pass
    if swept:
        log.warning("removed the firewall tables of dead node networks: %s", ", ".join(swept))
    return swept


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
    egress: EgressRules | None = None  # desktops go out (needs the firewall)
    dhcp: bool = False  # the node's dnsmasq serves DHCP on the bridge (qvd.hkd.dhcp)
    dns: bool = False  # ... and DNS

    @property
    def vm_range(self) -> str:
        return f"{self.ip_start}-{self.network.broadcast_address - 1}"

    @property
    def table(self) -> str:
        return _table_of(self.bridge)

    def check(self) -> None:
        """The bridge name must be an interface name (it is written into nft rules and
        a /proc path); the node's address must sit in the host part of the VM network."""
        if self.egress is not None and not self.firewall:
            raise NetworkError(
                "vm.network.egress.enable needs internal.vm.network.firewall.enable: "
                "the firewall is what keeps desktops in"
            )
        if not is_device_name(self.bridge):
            raise NetworkError(
                f"vm.network.bridge {self.bridge!r} is not an interface name "
                "(1-15 of A-Z a-z 0-9 _ . -)"
            )
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
        """Routes and addresses of this host that overlap the VM network and are not this
        node's own (its bridge's, or its guard route for exactly this network): using
        the network would hijack them."""
        found: list[str] = []
        out = _ip("-4", "-o", "route", "show", "table", "all", check=False).stdout
        for line in out.splitlines():
            words = line.split()
            if not words or words[0] in ("local", "broadcast", "multicast"):
                continue
            guard_kind = words[0] in ("unreachable", "blackhole", "prohibit")
            dest = words[1] if guard_kind and len(words) > 1 else words[0]
            if dest == "default":
                continue
            try:
                net = ipaddress.IPv4Network(dest, strict=False)
            except ValueError:
                continue
            ours = f"dev {self.bridge} " in f"{line} " or (
                words[0] == "unreachable"
                and net == self.network
                and f"metric {GUARD_METRIC}" in line
            )
            if net.overlaps(self.network) and not ours:
                found.append(line.strip())
        out = _ip("-4", "-o", "addr", "show", check=False).stdout
        for line in out.splitlines():
            words = line.split()
            if "inet" not in words or len(words) < 2 or words[1] == self.bridge:
                continue
            try:
                iface = ipaddress.IPv4Interface(words[words.index("inet") + 1])
            except (ValueError, IndexError):
                continue
            if iface.network.overlaps(self.network) or iface.ip in self.network:
                found.append(f"address {iface} on {words[1]}")
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
        disable_ipv6(self.bridge)
        sweep_dead_tables()
        if self.firewall:
            self._apply_firewall()
        if self.egress is not None:
            enable_forwarding()

    def _ruleset(self, ports: dict[str, Port], allowed: dict[str, str] | None = None) -> str:
        vms, br, t = self.vm_range, self.bridge, self.table
        service = f"{{ {self.vma_port}, {self.x_port} }}"
        arp = "ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4"
        node = self.host_address
        # a VM with no address yet asks for one from 0.0.0.0, with its own MAC, to the
        # node only (never forwarded to another VM); renewals come from its address
        dhcp_in = (
            # the client hardware address inside a DHCP message is the port's own MAC
            f"ether type ip ip protocol udp udp dport 67 iifname . {_CHADDR} != @chaddrs "
            "counter drop\n    "
            "ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 "
            "udp dport 67 iifname . ether saddr @macs accept"
            if self.dhcp
            else ""
        )
        node_in = (
            f'iifname "{br}" ip saddr {vms} ip daddr {{ {node}, 255.255.255.255 }} '
            "udp sport 68 udp dport 67 accept"
            if self.dhcp
            else ""
        )
        if self.dns:
            node_in += (
                f'\n    iifname "{br}" ip saddr {vms} ip daddr {node} udp dport 53 accept'
                f'\n    iifname "{br}" ip saddr {vms} ip daddr {node} tcp dport 53 accept'
            )

        def elements(name: str) -> str:
            items = [p.elements()[name] for p in ports.values()]
            return f"elements = {{ {', '.join(items)} }}" if items else ""

        egress = self.egress
        egress_sets = egress.sets(allowed or {}) if egress is not None else ""
        egress_forward = egress.forward(br) if egress is not None else ""
        egress_nat = egress.nat() if egress is not None else ""
        return f"""
table bridge {t}
delete table bridge {t}
table inet {t}
delete table inet {t}
table bridge {t} {{
  set ifaces {{ type ifname; {elements("ifaces")} }}
  set macs {{ type ifname . ether_addr; {elements("macs")} }}
  set ports {{ type ifname . ether_addr . ipv4_addr; {elements("ports")} }}
  set chaddrs {{ typeof iifname . {_CHADDR}; {elements("chaddrs")} }}
  chain ports_in {{
    type filter hook prerouting priority -200; policy accept;
    iifname != @ifaces accept
    iifname . ether saddr != @macs counter drop
    {dhcp_in}
    {arp} iifname . arp saddr ether . arp saddr ip @ports accept
    {arp} arp saddr ip 0.0.0.0 iifname . arp saddr ether @macs accept
    ether type ip iifname . ether saddr . ip saddr @ports accept
    counter drop
  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    ether type ip ip saddr 0.0.0.0 drop
    ip saddr {vms} ip daddr {vms} drop
    ip saddr {vms} tcp sport {service} accept
    ip saddr {vms} drop
  }}
}}
table inet {t} {{
  {egress_sets}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "{br}" meta nfproto ipv6 drop
    iifname "{br}" ip saddr {vms} ct state established,related accept
    {node_in}
    iifname "{br}" ip saddr {vms} drop
  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname "{br}" meta nfproto ipv6 drop
    oifname "{br}" meta nfproto ipv6 drop
    {egress_forward}
    iifname "{br}" ip saddr {vms} tcp sport {service} accept
    iifname "{br}" ip saddr {vms} drop
  }}
  {egress_nat}
}}
"""

    def _apply_firewall(self) -> None:
        ruleset = self._ruleset(read_ports(self.table), read_allowed(self.table))
        done = nft("-f", "-", script=ruleset)
        if done.returncode != 0:
            raise NetworkError(f"nft: {done.stderr.strip()}")

    def remove(self, *, guard: bool = False) -> None:
        """Remove the firewall tables and the bridge, and the guard route if asked
        (when the whole node is being taken down, e.g. at the end of ``qvd up``)."""
        for family in ("bridge", "inet"):
            nft("delete", "table", family, self.table)
        _ip("link", "del", self.bridge, check=False)
        if guard:
            route = ("route", "del", "unreachable", str(self.network))
            _ip(*route, "metric", str(GUARD_METRIC), check=False)
