"""Optional egress for desktops (issue #13): NAT out of one uplink of the node, for the
VMs whose tenant and OSF allow it. Off by default.

Who decides what:

- The node (``node.conf`` only, the tokens are node-local): ``vm.network.egress.enable``
  turns routing for VMs on at all, ``vm.network.egress.uplink`` names the one interface
  they may leave by, ``vm.network.egress.deny`` the destinations they never reach even
  then (private, link-local, loopback and multicast ranges by default: the node's LAN,
  a cloud's metadata service, the cluster's database). ``net.ipv4.ip_forward`` is
  turned on for the node's network namespace (on a host: host-wide) and left on.
- Per VM, when the node has egress: the OSF property ``vm.network.egress`` (``allow`` or
  ``deny``, or a boolean word: 1/0, yes/no, on/off) wins; without it, the token
  ``vm.network.egress.allow`` as the VM's tenant has it (a tenant row, else the global
  row, else node.conf, else 1). Any other value of the property, or values of it that
  disagree, deny (fail closed).
- A VM that may go out gets a gateway (``vm.network.gateway``, or this node's bridge
  address when empty) in its :class:`~qvd.hkd.backends.NetworkSpec`; the others get none
  and their address stays out of the allowed set, so a route they add themselves leads
  nowhere.

The rules (rendered into the node's ``inet`` table by :mod:`qvd.hkd.network`, so they
come and go with it, atomically): a set ``egress`` of the VM addresses that may go out,
a forward rule accepting bridge → uplink only from that set and only toward
destinations outside the deny list (everything else from the bridge stays dropped by
the node's own rules), answers back in, nothing new routed into the VM network, and a
``postrouting`` masquerade out of the uplink for the same set. The set is kept in step
with the VMs by :class:`EgressFilter`, where the HKD admits and releases their ports.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qvd.config import Config, ConfigError
from qvd.config.values import parse_bool, parse_list
from qvd.hkd.ports import NftSets, PortFilterError, is_device_name, read_set

__all__ = [
    "EGRESS_PROPERTY",
    "Decision",
    "Egress",
    "EgressError",
    "EgressFilter",
    "EgressFilterError",
    "EgressRules",
    "EgressSettings",
    "decide",
    "enable_forwarding",
    "how_to_enable",
    "read_allowed",
]

log = logging.getLogger("qvd.hkd.egress")

EGRESS_PROPERTY = "vm.network.egress"
ALLOW_SETTING = "vm.network.egress.allow"
_FORWARD_KNOB = Path("/proc/sys/net/ipv4/ip_forward")


class EgressError(Exception):
    """Egress cannot be set up as configured."""


class EgressFilterError(PortFilterError):
    """nft refused a change of the allowed set (a VM's port is not admitted)."""


def _interface(name: str, what: str) -> str:
    if not is_device_name(name):
        raise EgressError(f"{what} {name!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -)")
    return name


# ---- the node's settings -----------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class EgressSettings:
    """The node's egress tokens, read from its own configuration."""

    enabled: bool
    uplink: str
    gateway: str  # "" = this node's bridge address
    deny: tuple[ipaddress.IPv4Network, ...]

    @classmethod
    def from_config(cls, config: Config) -> EgressSettings:
        deny: list[ipaddress.IPv4Network] = []
        for item in parse_list(config.get("vm.network.egress.deny")):
            try:
                deny.append(ipaddress.IPv4Network(item, strict=False))
            except ValueError:
                raise EgressError(
                    f"vm.network.egress.deny: {item!r} is not an IPv4 network"
                ) from None
        return cls(
            enabled=config.get_bool("vm.network.egress.enable"),
            uplink=config.get("vm.network.egress.uplink").strip(),
            gateway=config.get("vm.network.gateway").strip(),
            deny=tuple(ipaddress.collapse_addresses(deny)),  # nft refuses overlaps
        )

    def node_rules(
        self, *, bridge: str, network: ipaddress.IPv4Network, node_address: str
    ) -> EgressRules | None:
        """The rules of a node, or None when its egress is off (the default)."""
        if not self.enabled:
            return None
        return self.rules(bridge=bridge, network=network, node_address=node_address)

    def rules(
        self, *, bridge: str, network: ipaddress.IPv4Network, node_address: str
    ) -> EgressRules:
        """The checked rules for a node whose VM bridge is ``bridge`` on ``network``."""
        if not self.uplink:
            raise EgressError(
                "vm.network.egress.enable is on but vm.network.egress.uplink is empty: name "
                "the interface the desktops go out by"
            )
        _interface(self.uplink, "vm.network.egress.uplink")
        if self.uplink == bridge:
            raise EgressError("vm.network.egress.uplink cannot be the VM bridge itself")
        gateway = self.gateway or node_address
        try:
            address = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise EgressError(f"vm.network.gateway {gateway!r} is not an IPv4 address") from None
        if address not in network or address in (
            network.network_address,
            network.broadcast_address,
        ):
            raise EgressError(
                f"vm.network.gateway {gateway} is not a host of the VM network {network}"
            )
        return EgressRules(uplink=self.uplink, gateway=str(address), deny=self.deny)


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressRules:
    """The nft pieces of egress, spliced into the node's ``inet`` table."""

    uplink: str
    gateway: str
    deny: tuple[ipaddress.IPv4Network, ...] = ()

    def __post_init__(self) -> None:
        _interface(self.uplink, "vm.network.egress.uplink")
        ipaddress.IPv4Address(self.gateway)

    def sets(self, allowed: dict[str, str]) -> str:
        """``egress``: the addresses that may go out; ``egress_ports``: which host
        device each belongs to (bookkeeping, so a restarted HKD can release them)."""
        addresses = sorted({ipaddress.IPv4Address(a) for a in allowed.values()})
        pairs = [
            f'"{_interface(d, "device")}" . {ipaddress.IPv4Address(a)}'
            for d, a in sorted(allowed.items())
        ]
        elements = f"elements = {{ {', '.join(str(a) for a in addresses)} }}" if addresses else ""
        port_elements = f"elements = {{ {', '.join(pairs)} }}" if pairs else ""
        return (
            f"set egress {{ type ipv4_addr; {elements} }}\n"
            f"  set egress_ports {{ type ifname . ipv4_addr; {port_elements} }}"
        )

    def forward(self, bridge: str) -> str:
        """Forward rules, placed before the node's own drop of everything from VMs."""
        up, br = self.uplink, bridge
        lines = [
            f'iifname "{up}" oifname "{br}" ct state established,related accept',
            f'iifname != "{br}" oifname "{br}" drop',
        ]
        if self.deny:
            nets = ", ".join(str(n) for n in self.deny)
            lines.append(f'iifname "{br}" oifname "{up}" ip daddr {{ {nets} }} drop')
        lines.append(f'iifname "{br}" oifname "{up}" ip saddr @egress accept')
        return "\n    ".join(lines)

    def nat(self) -> str:
        return (
            "chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    oifname "{self.uplink}" ip saddr @egress masquerade\n'
            "  }"
        )


def enable_forwarding(knob: Path = _FORWARD_KNOB) -> None:
    """Route IPv4 in this network namespace (a host's: host-wide). Left on afterwards:
    something else on the host may rely on it; the node's rules keep VMs in."""
    if knob.read_text().strip() != "1":
        knob.write_text("1\n")
        log.warning("net.ipv4.ip_forward turned on for desktop egress (it stays on)")


# ---- the allowed set ---------------------------------------------------------------------
def read_allowed(table: str) -> dict[str, str]:
    """Host device → address of the VMs the kernel lets out (empty without the set)."""
    found: dict[str, str] = {}
    for device, address in read_set("inet", table, "egress_ports", 2):
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            continue
        if is_device_name(device):
            found[device] = address
    return found


class EgressFilter(NftSets[str]):
    """Which VMs of a node table may go out (host device → address)."""

    error = EgressFilterError

    def _read(self) -> dict[str, str]:
        return read_allowed(self.table)

    def allowed(self) -> dict[str, str]:
        return self.held()

    def admit(self, device: str, address: str, *, out: bool) -> None:
        """The VM on ``device`` at ``address`` may go out (``out``) or may not: its
        address joins or leaves the set (an address belongs to one device at a time)."""
        _interface(device, "device")
        ipaddress.IPv4Address(address)
        with self._lock:
            known = self._held()
            holders = {d for d, a in known.items() if a == address}
            if out and holders == {device}:
                return
            if not out and not holders and device not in known:
                return
            lines: list[str] = []
            for d in holders | ({device} if device in known else set()):
                lines += self._removal(d, known[d])
            if out:
                lines.append(f"add element inet {self.table} egress {{ {address} }}")
                lines.append(
                    f'add element inet {self.table} egress_ports {{ "{device}" . {address} }}'
                )
            self._apply(lines)
            for d in holders:
                known.pop(d, None)
            known.pop(device, None)
            if out:
                known[device] = address

    def _removal(self, device: str, held: str) -> list[str]:
        pair = f'"{device}" . {held}'
        return self._delete("inet", "egress", held) + self._delete("inet", "egress_ports", pair)


# ---- the decision per VM -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a VM may go out, and which setting said so (for the log)."""

    out: bool
    because: str


def decide(*, tenant_allows: bool, osf_choice: str | None) -> Decision:
    """The OSF property wins over the tenant's token; an unreadable property denies."""
    if osf_choice is not None and osf_choice.strip():
        word = osf_choice.strip().lower()
        if word in ("allow", "deny"):
            return Decision(word == "allow", f"OSF property {EGRESS_PROPERTY}={word}")
        try:
            return Decision(parse_bool(word), f"OSF property {EGRESS_PROPERTY}={word}")
        except ValueError:
            return Decision(False, f"OSF property {EGRESS_PROPERTY} is not allow or deny")
    return Decision(tenant_allows, f"{ALLOW_SETTING}={int(tenant_allows)} for its tenant")


class Egress:
    """A node's egress as the HKD's reconciler uses it: the decision for a VM at its
    start and the allowed set, kept in step where ports are admitted and released.
    ``config`` gives the configuration with the database's rows over the node's file
    (re-read when they change), for the tenant's ``vm.network.egress.allow``."""

    def __init__(
        self, rules: EgressRules, allowed: EgressFilter, config: Callable[[], Config]
    ) -> None:
        self.rules = rules
        self.allowed = allowed
        self._config = config

    def gateway_for(self, tenant_id: int, osf_choices: list[str]) -> tuple[str | None, Decision]:
        """The gateway to give a VM of ``tenant_id`` whose OSF has these values of the
        property (None: no route out), and why. Values that disagree deny."""
        try:
            allows = self._config().get_bool(ALLOW_SETTING, tenant_id)
        except ConfigError:  # a row that does not read as a boolean: fail closed
            allows = False
        choices = {c.strip().lower() for c in osf_choices if c.strip()}
        choice = choices.pop() if len(choices) == 1 else ("deny" if choices else None)
        decision = decide(tenant_allows=allows, osf_choice=choice)
        return (self.rules.gateway if decision.out else None), decision

    def admit(self, device: str, address: str, *, out: bool) -> None:
        self.allowed.admit(device, address, out=out)

    def release(self, device: str) -> None:
        self.allowed.release(device)


def how_to_enable(settings: EgressSettings) -> list[str]:
    """Lines for ``qvd up``'s summary: the state of egress and how to change it."""
    if settings.enabled:
        return [
            f"  egress:   desktops go out by NAT on {settings.uplink or '(no uplink set!)'}; "
            f"deny one tenant with `{ALLOW_SETTING} = 0`, one OSF with its property "
            f"`{EGRESS_PROPERTY} = deny`",
        ]
    return [
        "  egress:   off (desktops reach nothing beyond this node); to let them out, add to "
        "node.conf",
        "            `vm.network.egress.enable = 1` and `vm.network.egress.uplink = <interface>`",
    ]
