"""The node's DHCP (and optional DNS) for its VMs, as data: static leases, settings and
the dnsmasq command line and files they become. No process and no I/O here
(``qvd.hkd.dnsmasq`` runs it).

One dnsmasq per node, bound only to the VM bridge, answers only the MACs it is given
(``MAC → IP`` from the database, the MAC from :func:`qvd.hkd.addressing.mac_for`):
an unknown MAC gets no offer. It gives no default route and no DNS server unless a
lease says the VM has a gateway (egress), and then the bridge address as its DNS
server when ``vm.network.dns.enable`` is on. DNS is off (``--port=0``) unless enabled,
and then answers on the bridge only, forwarding to the configured upstreams and to
nothing else (no ``/etc/resolv.conf``, no ``/etc/hosts`` of the node).

Values are data: a MAC, an address or a host name is checked before it meets a file,
so a VM name with a newline, a comma or anything else never adds a line or an option
(a name that is not a valid host name is left out, the lease stays). VM names are
given as DHCP host names only while DNS is off: dnsmasq would otherwise answer them
in DNS to every VM of the node, whatever its tenant.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from qvd.config import Config, ConfigValueError
from qvd.config.values import parse_list
from qvd.hkd.addressing import mac_for
from qvd.hkd.ports import is_device_name

__all__ = [
    "DhcpSettings",
    "LeaseBook",
    "StaticLease",
    "VmAddress",
    "dnsmasq_argv",
    "host_name",
    "render_hosts",
    "render_options",
]

log = logging.getLogger("qvd.hkd.dhcp")

_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
# one DNS label (RFC 1123): what dnsmasq accepts as a DHCP host name
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MIN_LEASE = 120  # dnsmasq's floor


def host_name(name: str) -> str | None:
    """``name`` as a DHCP host name (lower case), or None if it is not a valid one."""
    return name.lower() if _HOST_NAME.fullmatch(name) else None


def _ipv4(value: str, what: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an IPv4 address") from None
    if str(address) != value:
        raise ValueError(f"{what} {value!r} is not written canonically ({address})")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticLease:
    """One VM's lease: its MAC gets ``ip``; ``gateway`` (egress) adds a default route."""

    mac: str
    ip: str
    hostname: str | None = None
    gateway: str | None = None

    def __post_init__(self) -> None:
        if not _MAC.fullmatch(self.mac):
            raise ValueError(f"MAC {self.mac!r} is not six lower-case hex octets")
        _ipv4(self.ip, "lease address")
        if self.hostname is not None and host_name(self.hostname) != self.hostname:
            raise ValueError(f"host name {self.hostname!r} is not a lower-case DNS label")
        if self.gateway is not None:
            _ipv4(self.gateway, "gateway")

    @classmethod
    def for_vm(cls, *, mac: str, ip: str, name: str, gateway: str | None = None) -> StaticLease:
        """A VM's lease; its name becomes the host name only if it is a valid one."""
        return cls(mac=mac, ip=ip, hostname=host_name(name), gateway=gateway)


def _dns_servers(text: str) -> tuple[str, ...]:
    servers: list[str] = []
    for item in parse_list(text):
        address, hash_, port = item.partition("#")
        try:
            server = str(ipaddress.ip_address(address))
            if hash_ and not (port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(port)
        except ValueError:
            raise ConfigValueError(
                f"vm.network.dns.servers: {item!r} is not an IP address (optionally #port)"
            ) from None
        servers.append(f"{server}#{int(port)}" if hash_ else server)
    return tuple(servers)


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpSettings:
    """What the node's dnsmasq serves and where its files live."""

    enabled: bool
    bridge: str
    server_address: str  # the node's address on the bridge
    network: ipaddress.IPv4Network
    lease_time: int  # seconds
    dns: bool
    dns_servers: tuple[str, ...]
    run_dir: Path  # pid, hosts and options files
    user: str = "dnsmasq"
    group: str = "nogroup"
    program: str = "dnsmasq"

    def __post_init__(self) -> None:
        if not is_device_name(self.bridge):  # dnsmasq reads a comma as a second interface
            raise ConfigValueError(f"vm.network.bridge {self.bridge!r} is not an interface name")
        if self.lease_time < _MIN_LEASE:
            raise ConfigValueError(
                f"vm.network.dhcp.lease_time is {self.lease_time}: at least {_MIN_LEASE} s"
            )
        if ipaddress.IPv4Address(self.server_address) not in self.network:
            raise ConfigValueError(
                f"the node's address {self.server_address} is outside the VM network {self.network}"
            )
        if self.dns and not self.dns_servers:
            raise ConfigValueError(
                "vm.network.dns.enable is on but vm.network.dns.servers names no upstream"
            )

    @classmethod
    def from_config(
        cls, config: Config, *, server_address: str, network: ipaddress.IPv4Network
    ) -> DhcpSettings:
        return cls(
            enabled=config.get_bool("vm.network.use_dhcp"),
            bridge=config.get("vm.network.bridge"),
            server_address=server_address,
            network=network,
            lease_time=config.get_int("vm.network.dhcp.lease_time"),
            dns=config.get_bool("vm.network.dns.enable"),
            dns_servers=_dns_servers(config.get("vm.network.dns.servers")),
            run_dir=config.get_path("path.run") / "dhcp",
        )

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "dnsmasq.pid"

    @property
    def hosts_file(self) -> Path:
        return self.run_dir / "hosts"

    @property
    def options_file(self) -> Path:
        return self.run_dir / "options"


def dnsmasq_argv(settings: DhcpSettings) -> list[str]:
    """The whole command line: nothing comes from a system configuration file."""
    s = settings
    argv = [
        s.program,
        "--conf-file=/dev/null",
        "--keep-in-foreground",
        "--log-facility=-",
        "--quiet-dhcp",  # no line per DHCP packet: the log stays small
        f"--pid-file={s.pid_file}",
        f"--user={s.user}",
        f"--group={s.group}",
        f"--interface={s.bridge}",
        "--bind-interfaces",
        "--except-interface=lo",
        "--no-hosts",
        "--leasefile-ro",
        "--dhcp-authoritative",
        f"--dhcp-range={s.network.network_address},static,{s.network.netmask},{s.lease_time}",
        "--dhcp-ignore=tag:!known",
        "--dhcp-ignore-names",
        f"--dhcp-hostsfile={s.hosts_file}",
        f"--dhcp-optsfile={s.options_file}",
        # no value: suppress dnsmasq's defaults (itself as router and DNS server);
        # a lease with a gateway gets both from the options file, by its tag
        "--dhcp-option=option:router",
        "--dhcp-option=option:dns-server",
    ]
    if not s.dns:
        return [*argv, "--port=0"]
    return [
        *argv,
        "--no-resolv",
        "--domain-needed",
        "--bogus-priv",
        *(f"--server={server}" for server in s.dns_servers),
    ]


def _tag(gateway: str) -> str:
    return "gw" + ipaddress.IPv4Address(gateway).packed.hex()


def render_hosts(leases: Iterable[StaticLease], *, names: bool = True) -> str:
    """The ``--dhcp-hostsfile``: one ``MAC[,set:TAG],IP[,NAME]`` per lease, sorted."""
    lines: list[str] = []
    for lease in sorted(leases, key=lambda item: (ipaddress.IPv4Address(item.ip), item.mac)):
        fields = [lease.mac]
        if lease.gateway is not None:
            fields.append(f"set:{_tag(lease.gateway)}")
        fields.append(lease.ip)
        if names and lease.hostname is not None:
            fields.append(lease.hostname)
        lines.append(",".join(fields))
    return "".join(f"{line}\n" for line in lines)


def render_options(leases: Iterable[StaticLease], settings: DhcpSettings) -> str:
    """The ``--dhcp-optsfile``: for each gateway in use, the route (and, with DNS on,
    the bridge address as DNS server) given to the leases tagged with it."""
    lines: list[str] = []
    for gateway in sorted({lease.gateway for lease in leases if lease.gateway is not None}):
        tag = _tag(gateway)
        lines.append(f"tag:{tag},option:router,{gateway}")
        if settings.dns:
            lines.append(f"tag:{tag},option:dns-server,{settings.server_address}")
    return "".join(f"{line}\n" for line in lines)


@dataclass(frozen=True, slots=True)
class VmAddress:
    """A VM's row as the leases need it (``ip`` None or empty: it has none)."""

    vm_id: int
    name: str
    ip: str | None


class LeaseBook:
    """The leases of the node, kept from two sources and pushed (``publish``) whenever
    they change: the database (every VM with an address in the VM network, via
    ``sync``) and the HKD right before it starts a VM (``before_start``: its lease is
    present before it can ask, with the gateway its start decided). The gateway of a VM
    is the one its last start decided (None until then: no route out)."""

    def __init__(
        self,
        network: ipaddress.IPv4Network,
        mac_prefix: str,
        publish: Callable[[list[StaticLease]], object],
    ) -> None:
        self.network = network
        self.mac_prefix = mac_prefix
        self._publish = publish
        self._lock = threading.Lock()
        self._leases: dict[int, StaticLease] = {}
        self._gateways: dict[int, str | None] = {}
        # the lease last made of each row (name, ip, gateway): a poll that finds the
        # rows unchanged checks nothing again
        self._made: dict[int, tuple[tuple[str, str | None, str | None], StaticLease | None]] = {}

    def leases(self) -> list[StaticLease]:
        with self._lock:
            return list(self._leases.values())

    def _lease(self, vm: VmAddress) -> StaticLease | None:
        if not vm.ip:
            return None
        try:
            address = ipaddress.IPv4Address(vm.ip)
            if address not in self.network:
                return None
            return StaticLease.for_vm(
                mac=mac_for(str(address), self.mac_prefix),
                ip=str(address),
                name=vm.name,
                gateway=self._gateways.get(vm.vm_id),
            )
        except ValueError as exc:
            log.warning("VM %s gets no DHCP lease: %s", vm.vm_id, exc)
            return None

    def sync(self, vms: Iterable[VmAddress], *, gateways: Mapping[int, str] | None = None) -> None:
        """Serve exactly the VMs given (the database's view); ``gateways``: those of VMs
        whose starts this book did not see (an HKD that restarts), kept from then on."""
        with self._lock:
            self._gateways.update(gateways or {})
            wanted: dict[int, StaticLease] = {}
            made: dict[int, tuple[tuple[str, str | None, str | None], StaticLease | None]] = {}
            for vm in vms:
                key = (vm.name, vm.ip, self._gateways.get(vm.vm_id))
                cached = self._made.get(vm.vm_id)
                lease = cached[1] if cached is not None and cached[0] == key else self._lease(vm)
                made[vm.vm_id] = (key, lease)
                if lease is not None:
                    wanted[vm.vm_id] = lease
            self._made = made
            # two rows with one address (never in a sane database): serve neither
            by_ip: dict[str, list[int]] = {}
            for vm_id, lease in wanted.items():
                by_ip.setdefault(lease.ip, []).append(vm_id)
            for ip, ids in by_ip.items():
                if len(ids) > 1:
                    log.warning("VMs %s share the address %s: no DHCP lease for them", ids, ip)
                    for vm_id in ids:
                        del wanted[vm_id]
            self._gateways = {k: v for k, v in self._gateways.items() if k in wanted}
            changed = wanted != self._leases
            self._leases = wanted
            if changed:  # under the lock: publishes never overtake each other
                self._publish(list(wanted.values()))

    def before_start(
        self, vm_id: int, name: str, *, mac: str, ip: str, gateway: str | None
    ) -> None:
        """A VM is about to start with this MAC and address (and gateway, None: no
        route out): serve its lease now."""
        lease = StaticLease.for_vm(mac=mac, ip=ip, name=name, gateway=gateway)
        with self._lock:
            before = dict(self._leases)
            self._gateways[vm_id] = gateway
            for other, held in list(self._leases.items()):
                if other != vm_id and (held.ip == lease.ip or held.mac == lease.mac):
                    del self._leases[other]  # the database moved the address
            self._leases[vm_id] = lease
            if self._leases != before:
                self._publish(list(self._leases.values()))
