"""The node's DHCP as data: leases checked before they meet a file, the files and the
dnsmasq command line they become, and the lease book that follows the database and
the HKD's starts. No process here (``test_dhcp_server`` runs a real dnsmasq)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.config import Config, ConfigValueError
from qvd.hkd.addressing import mac_for
from qvd.hkd.backends import VmSpec
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.dhcp import (
    DhcpSettings,
    LeaseBook,
    StaticLease,
    VmAddress,
    dnsmasq_argv,
    host_name,
    render_hosts,
    render_options,
)
from qvd.hkd.reconcile import Reconciler
from qvd.hkd.settings import HkdSettings
from tests.hkd.conftest import FakeVma, add_host, add_vm, command, hkd_config
from tests.hkd.test_reconcile import drive

NET = ipaddress.IPv4Network("10.231.0.0/16")


def settings(tmp_path: Path, **changes: object) -> DhcpSettings:
    values: dict[str, object] = {
        "enabled": True,
        "bridge": "qvdnet",
        "server_address": "10.231.0.2",
        "network": NET,
        "lease_time": 3600,
        "dns": False,
        "dns_servers": (),
        "run_dir": tmp_path,
    }
    values.update(changes)
    return DhcpSettings(**values)  # type: ignore[arg-type]


# ---- leases --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mac", "ip", "hostname", "gateway"),
    [
        ("54:52:00:00:00:65\n", "10.231.0.101", None, None),
        ("54:52:00:00:00:6", "10.231.0.101", None, None),
        ("54:52:00:00:00:6G", "10.231.0.101", None, None),
        ("54:52:00:00:00:65,set:x", "10.231.0.101", None, None),
        ("54:52:00:00:00:65", "10.231.0.101,evil", None, None),
        ("54:52:00:00:00:65", "10.231.000.101", None, None),
        ("54:52:00:00:00:65", "10.231.0.101\n", None, None),
        ("54:52:00:00:00:65", "::1", None, None),
        ("54:52:00:00:00:65", "10.231.0.101", "a,b", None),
        ("54:52:00:00:00:65", "10.231.0.101", "a\nb", None),
        ("54:52:00:00:00:65", "10.231.0.101", "Upper", None),
        ("54:52:00:00:00:65", "10.231.0.101", "-lead", None),
        ("54:52:00:00:00:65", "10.231.0.101", "x" * 64, None),
        ("54:52:00:00:00:65", "10.231.0.101", None, "10.231.0.2,1.1.1.1"),
    ],
)
def test_a_lease_refuses_anything_but_plain_values(
    mac: str, ip: str, hostname: str | None, gateway: str | None
) -> None:
    with pytest.raises(ValueError, match="not"):
        StaticLease(mac=mac, ip=ip, hostname=hostname, gateway=gateway)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("desk-1", "desk-1"),
        ("Desk1", "desk1"),
        ("a", "a"),
        ("x" * 63, "x" * 63),
        ("x" * 64, None),
        ("desk_1", None),
        ("desk.example", None),
        ("desk,10.0.0.9", None),
        ("desk\n54:52:00:00:00:01,10.231.0.9", None),
        ("-desk", None),
        ("desk-", None),
        ("", None),
        ("déjà", None),
    ],
)
def test_a_vm_name_becomes_a_host_name_only_if_it_is_one(name: str, expected: str | None) -> None:
    assert host_name(name) == expected
    lease = StaticLease.for_vm(mac="54:52:00:00:00:65", ip="10.231.0.101", name=name)
    assert lease.hostname == expected  # an odd name loses the name, never the lease


def test_the_hosts_file_has_one_line_per_lease_sorted_by_address() -> None:
    leases = [
        StaticLease(mac="54:52:00:00:01:02", ip="10.231.1.2", hostname="b"),
        StaticLease(mac="54:52:00:00:00:65", ip="10.231.0.101", gateway="10.231.0.2"),
        StaticLease(mac="54:52:00:00:00:66", ip="10.231.0.102", hostname="a"),
    ]
    assert render_hosts(leases) == (
        "54:52:00:00:00:65,set:gw0ae70002,10.231.0.101\n"
        "54:52:00:00:00:66,10.231.0.102,a\n"
        "54:52:00:00:01:02,10.231.1.2,b\n"
    )
    assert render_hosts(leases, names=False) == (
        "54:52:00:00:00:65,set:gw0ae70002,10.231.0.101\n"
        "54:52:00:00:00:66,10.231.0.102\n"
        "54:52:00:00:01:02,10.231.1.2\n"
    )
    assert render_hosts([]) == ""


def test_options_give_a_route_only_to_leases_with_a_gateway(tmp_path: Path) -> None:
    plain = StaticLease(mac="54:52:00:00:00:66", ip="10.231.0.102")
    out = StaticLease(mac="54:52:00:00:00:65", ip="10.231.0.101", gateway="10.231.0.2")
    assert render_options([plain], settings(tmp_path)) == ""
    assert render_options([plain, out], settings(tmp_path)) == (
        "tag:gw0ae70002,option:router,10.231.0.2\n"
    )
    with_dns = settings(tmp_path, dns=True, dns_servers=("192.0.2.53",))
    assert render_options([plain, out], with_dns) == (
        "tag:gw0ae70002,option:router,10.231.0.2\ntag:gw0ae70002,option:dns-server,10.231.0.2\n"
    )


# ---- command line ------------------------------------------------------------------------
def test_dnsmasq_reads_nothing_of_the_system_and_binds_the_bridge_only(tmp_path: Path) -> None:
    argv = dnsmasq_argv(settings(tmp_path))
    assert argv[0] == "dnsmasq"
    for option in (
        "--conf-file=/dev/null",
        "--keep-in-foreground",
        "--interface=qvdnet",
        "--bind-interfaces",
        "--except-interface=lo",
        "--no-hosts",
        "--user=dnsmasq",
        f"--pid-file={tmp_path / 'dnsmasq.pid'}",
        f"--dhcp-hostsfile={tmp_path / 'hosts'}",
        f"--dhcp-optsfile={tmp_path / 'options'}",
        "--dhcp-range=10.231.0.0,static,255.255.0.0,3600",
        "--dhcp-ignore=tag:!known",
        "--dhcp-option=option:router",  # no value: no route by default
        "--dhcp-option=option:dns-server",
        "--port=0",  # no DNS
    ):
        assert option in argv
    assert not any(a.startswith(("--server", "--listen-address", "--dhcp-leasefile")) for a in argv)


def test_with_dns_it_forwards_to_the_configured_upstreams_only(tmp_path: Path) -> None:
    argv = dnsmasq_argv(
        settings(tmp_path, dns=True, dns_servers=("192.0.2.53", "2001:db8::53", "127.0.0.1#5353"))
    )
    assert "--port=0" not in argv
    assert "--no-resolv" in argv
    assert "--no-hosts" in argv
    assert [a for a in argv if a.startswith("--server=")] == [
        "--server=192.0.2.53",
        "--server=2001:db8::53",
        "--server=127.0.0.1#5353",
    ]


# ---- settings ------------------------------------------------------------------------------
def _config(**values: str) -> Config:
    base = {"vm.network.bridge": "qvdnet", "path.run": "/run/qvd-test"}
    base.update(values)
    return Config().with_overrides(base, source="test")


def test_settings_from_the_configuration() -> None:
    s = DhcpSettings.from_config(_config(), server_address="10.231.0.2", network=NET)
    assert s.enabled
    assert not s.dns
    assert s.lease_time == 3600
    assert s.run_dir == Path("/run/qvd-test/dhcp")
    s = DhcpSettings.from_config(
        _config(**{
            "vm.network.use_dhcp": "0", "vm.network.dns.enable": "1",
            "vm.network.dns.servers": "192.0.2.1, 192.0.2.2#53",
            "vm.network.dhcp.lease_time": "600",
        }),
        server_address="10.231.0.2", network=NET,
    )  # fmt: skip
    assert not s.enabled
    assert s.dns
    assert s.lease_time == 600
    assert s.dns_servers == ("192.0.2.1", "192.0.2.2#53")


@pytest.mark.parametrize(
    "values",
    [
        {"vm.network.dns.enable": "1"},  # DNS with no upstream
        {"vm.network.dns.servers": "resolver.example"},
        {"vm.network.dns.servers": "192.0.2.1 --conf-file=/etc/x"},
        {"vm.network.dns.servers": "192.0.2.1#99999"},
        {"vm.network.dns.servers": "192.0.2.1#53,x"},
        {"vm.network.dhcp.lease_time": "60"},
        {"vm.network.bridge": "qvdbr0,eth0"},  # would serve the node's LAN too
    ],
)
def test_settings_refuse_bad_values(values: dict[str, str]) -> None:
    with pytest.raises(ConfigValueError):
        DhcpSettings.from_config(_config(**values), server_address="10.231.0.2", network=NET)


def test_settings_refuse_a_node_outside_the_vm_network(tmp_path: Path) -> None:
    with pytest.raises(ConfigValueError, match="outside the VM network"):
        settings(tmp_path, server_address="10.9.0.2")


# ---- lease book ------------------------------------------------------------------------------
class Published:
    def __init__(self) -> None:
        self.calls: list[list[StaticLease]] = []

    def __call__(self, leases: list[StaticLease]) -> None:
        self.calls.append(sorted(leases, key=lambda lease: lease.ip))


def test_the_book_follows_the_database_and_publishes_only_changes() -> None:
    published = Published()
    book = LeaseBook(NET, "54:52:00", published)
    rows = [VmAddress(10000, "desk", "10.231.0.101"), VmAddress(10001, "x,y", "10.231.0.102")]
    book.sync(rows)
    assert published.calls == [[
        StaticLease(mac=mac_for("10.231.0.101"), ip="10.231.0.101", hostname="desk"),
        StaticLease(mac=mac_for("10.231.0.102"), ip="10.231.0.102"),
    ]]  # fmt: skip
    book.sync(rows)
    assert len(published.calls) == 1  # nothing changed: no rewrite, no reload

    book.sync([VmAddress(10000, "desk", "10.231.0.111")])  # moved; 10001 deleted
    assert published.calls[-1] == [
        StaticLease(mac=mac_for("10.231.0.111"), ip="10.231.0.111", hostname="desk")
    ]


def test_the_book_leaves_out_addresses_it_cannot_serve() -> None:
    published = Published()
    book = LeaseBook(NET, "54:52:00", published)
    book.sync([
        VmAddress(1, "none", None), VmAddress(2, "empty", ""),
        VmAddress(3, "outside", "10.9.0.5"), VmAddress(4, "junk", "10.231.0.5\n,x"),
        VmAddress(5, "twin-a", "10.231.0.7"), VmAddress(6, "twin-b", "10.231.0.7"),
        VmAddress(7, "fine", "10.231.0.8"),
    ])  # fmt: skip
    assert [lease.ip for lease in published.calls[-1]] == ["10.231.0.8"]


def test_a_start_serves_its_lease_with_the_gateway_it_decided() -> None:
    published = Published()
    book = LeaseBook(NET, "54:52:00", published)
    book.sync([VmAddress(10000, "desk", "10.231.0.101")])
    mac = mac_for("10.231.0.101")
    book.before_start(10000, "desk", mac=mac, ip="10.231.0.101", gateway="10.231.0.2")
    expected = StaticLease(mac=mac, ip="10.231.0.101", hostname="desk", gateway="10.231.0.2")
    assert published.calls[-1] == [expected]
    # the database's view keeps the gateway the start decided
    book.sync([VmAddress(10000, "desk", "10.231.0.101")])
    assert book.leases() == [expected]
    assert len(published.calls) == 2
    # the next start without egress takes it away
    book.before_start(10000, "desk", mac=mac, ip="10.231.0.101", gateway=None)
    assert published.calls[-1][0].gateway is None


def test_a_start_before_the_database_sync_is_served_and_takes_its_address() -> None:
    published = Published()
    book = LeaseBook(NET, "54:52:00", published)
    book.sync([VmAddress(10000, "old", "10.231.0.101")])
    # the address went to a new VM before this node synced: the start wins
    book.before_start(10001, "new", mac=mac_for("10.231.0.101"), ip="10.231.0.101", gateway=None)
    assert published.calls[-1] == [
        StaticLease(mac=mac_for("10.231.0.101"), ip="10.231.0.101", hostname="new")
    ]


# ---- the reconciler serves a VM's lease before it starts it ----------------------------------
def test_the_lease_is_served_before_the_backend_starts_the_vm(
    engine: Engine, run_dir: Path
) -> None:
    backend, vma = FakeBackend(), FakeVma()
    settings = HkdSettings.from_config(hkd_config(run_dir))
    published = Published()
    book = LeaseBook(NET, settings.mac_prefix, published)

    def before_start(spec: VmSpec) -> None:
        backend.calls.append(("lease", spec.vm_id))  # in order with the backend's calls
        net = spec.network
        book.before_start(spec.vm_id, spec.name, mac=net.mac, ip=net.address, gateway=None)

    rec = Reconciler(engine, backend, add_host(engine), settings, vma, before_start=before_start)
    vm_id, ip = add_vm(engine)
    command(engine, vm_id, "start", rec.host.id)
    vma.alive.add(ip)
    drive(rec, vm_id, "running")
    assert backend.calls == [("lease", vm_id), ("prepare", vm_id), ("start", vm_id)]
    assert published.calls == [
        [StaticLease(mac=mac_for(ip), ip=ip, hostname=f"vm{ip.split('.')[-1]}")]
    ]
    rec.reconcile(vm_id)  # running: nothing asked again
    assert len(published.calls) == 1
