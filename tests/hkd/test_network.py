"""The node's VM network set-up: overlap refusal (the host's LAN, another interface's
address, another node network of the project), idempotent re-runs that keep the
admitted ports, and the well-formedness checks of a port. Real ``ip`` and nftables in
this host's namespace, with unique names, removed on every exit path."""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.hkd.daemon import Hkd, HkdStartError
from qvd.hkd.network import NetworkError, NodeNetwork
from qvd.hkd.ports import Port, PortFilter, PortFilterError, read_ports
from tests.hkd.conftest import add_host, hkd_config
from tests.hkd.lxcnode import free_subnet
from tests.security.hostile_net import marker, node_net, udp_frame

pytestmark = pytest.mark.root


def _network(subnet: ipaddress.IPv4Network, bridge: str | None = None) -> NodeNetwork:
    return NodeNetwork(
        bridge=f"qvdn{secrets.token_hex(3)}" if bridge is None else bridge,
        host_address=str(subnet.network_address + 2),
        network=subnet,
        ip_start=subnet.network_address + max(3, subnet.num_addresses // 2),
        vma_port=3030,
        x_port=4100,
    )


def _exists(device: str) -> bool:
    done = subprocess.run(["ip", "link", "show", device], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def made(root_only: None) -> Iterator[list[NodeNetwork]]:
    """Networks a test sets up; each is removed (bridge, tables, guard route) after."""
    networks: list[NodeNetwork] = []
    yield networks
    for network in networks:
        network.remove(guard=True)


def test_the_hosts_own_lan_is_refused(made: list[NodeNetwork]) -> None:
    """The network of this host's default route (its LAN) as VM network: refused before
    anything is created (nothing is sent anywhere)."""
    route = subprocess.run(["ip", "-4", "-o", "route", "show", "default"],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    if "dev" not in route:
        pytest.skip("this host has no IPv4 default route")
    device = route[route.index("dev") + 1]
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", device],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    lan = ipaddress.IPv4Interface(shown[shown.index("inet") + 1]).network
    if lan.prefixlen > 29:
        pytest.skip(f"the LAN {lan} is too small for a VM network")
    network = _network(lan)
    made.append(network)
    with pytest.raises(NetworkError, match="overlaps"):
        network.ensure()
    assert not _exists(network.bridge)


def test_another_interfaces_address_is_refused(made: list[NodeNetwork]) -> None:
    """An address in the range on another interface, even without a route of its own."""
    subnet = free_subnet()
    tag = secrets.token_hex(3)
    dummy = f"qvdd{tag}"  # a veth pair stands for any other interface (no dummy module)
    subprocess.run(["ip", "link", "add", dummy, "type", "veth", "peer", "name", f"qvde{tag}"],
                   check=True)  # fmt: skip
    try:
        subprocess.run(["ip", "addr", "add", f"{subnet.network_address + 7}/32", "dev", dummy,
                        "noprefixroute"], check=True)  # fmt: skip
        network = _network(subnet)
        made.append(network)
        with pytest.raises(NetworkError, match=f"address .* on {dummy}"):
            network.ensure()
        assert not _exists(network.bridge)
    finally:
        subprocess.run(["ip", "link", "del", dummy], check=False)


def test_another_node_network_is_refused(made: list[NodeNetwork]) -> None:
    subnet = free_subnet()
    first = _network(subnet)
    made.append(first)
    first.ensure()
    inside = ipaddress.IPv4Network(f"{subnet.network_address}/25")
    second = _network(inside)
    made.append(second)
    with pytest.raises(NetworkError, match=f"dev {first.bridge}"):
        second.ensure()
    # its bridge gone, the first network's guard route still claims the range
    first.remove()
    with pytest.raises(NetworkError, match="unreachable"):
        second.ensure()
    assert not _exists(second.bridge)


def test_ensure_twice_keeps_the_admitted_ports(made: list[NodeNetwork]) -> None:
    """What a restarted HKD does: the firewall is rewritten, the VMs' ports stay."""
    network = _network(free_subnet())
    made.append(network)
    network.ensure()
    port = Port("qvd77777", "54:52:00:01:02:03", str(network.ip_start + 1))
    PortFilter(network.table).admit(port)
    network.ensure()
    assert read_ports(network.table) == {"qvd77777": port}
    # a fresh filter (a new HKD) knows it, and replaces it when the device is reused
    ports = PortFilter(network.table)
    assert ports.admitted() == {"qvd77777": port}
    moved = Port("qvd77777", "54:52:00:01:02:04", str(network.ip_start + 2))
    ports.admit(moved)
    assert read_ports(network.table) == {"qvd77777": moved}
    knob = f"/proc/sys/net/ipv6/conf/{network.bridge}/disable_ipv6"
    with open(knob) as sysctl:
        assert sysctl.read().strip() == "1"


@pytest.mark.parametrize("bridge", ['br0"; flush ruleset; "', "../all", "qvdbridge0123456", ""])
def test_a_bridge_name_that_is_not_an_interface_name_is_refused(bridge: str) -> None:
    network = _network(ipaddress.IPv4Network("10.214.1.0/24"), bridge)
    with pytest.raises(NetworkError, match="not an interface name"):
        network.check()


@pytest.mark.parametrize(
    ("device", "mac", "address"),
    [
        ('qvd1"; flush ruleset; "', "54:52:00:01:02:03", "10.0.0.5"),
        ("../../x", "54:52:00:01:02:03", "10.0.0.5"),
        ("qvd1234567890123", "54:52:00:01:02:03", "10.0.0.5"),
        ("qvd1", "54:52:00:01:02:03 } ", "10.0.0.5"),
        ("qvd1", "ff:ff:ff:ff:ff:ff", "10.0.0.5"),
        ("qvd1", "54:52:00:01:02:03", "10.0.0.5 . 1.2.3.4"),
    ],
)
def test_a_port_is_checked_before_it_meets_nft(device: str, mac: str, address: str) -> None:
    with pytest.raises(PortFilterError):
        Port(device, mac, address)


def test_the_node_daemon_refuses_to_start_on_an_overlapping_network(
    db: DatabaseTarget, engine: Engine, run_dir: Path, made: list[NodeNetwork]
) -> None:
    """``qvd up`` / ``qvd hkd`` turn the refusal into a clear start error."""
    subnet = free_subnet()
    first = _network(subnet)  # another node network of the project holds the range
    made.append(first)
    first.ensure()
    bridge = f"qvdn{secrets.token_hex(3)}"
    made.append(_network(subnet, bridge))
    config = hkd_config(
        run_dir,
        **{
            "vm.network.bridge.manage": "1",
            "vm.network.bridge": bridge,
            "vm.network.ip.start": str(subnet.network_address + 100),
            "vm.network.netmask": str(subnet.prefixlen),
        },
    )
    add_host(engine, "node1", str(subnet.network_address + 3))
    hkd = Hkd(config, target=db)
    with pytest.raises(HkdStartError, match=f"overlaps a route of this host.*{first.bridge}"):
        hkd.start()
    assert not _exists(bridge)


def test_a_dead_nodes_firewall_does_not_filter_another_bridges_ports(
    made: list[NodeNetwork],
) -> None:
    """A node that died without its clean-up (a crashed test run, a killed HKD) leaves
    its nftables tables. VM ports are named by VM id, so a later node's port can carry
    a name the dead table still lists with another MAC: its frames must not be dropped
    by that table. A node sweeps the tables of bridges that are gone."""
    dead = _network(free_subnet())
    made.append(dead)  # whatever is left of it is removed at the end
    dead.ensure()
    port = "qvd" + secrets.token_hex(4)
    PortFilter(dead.table).admit(Port(port, "54:52:00:0f:0f:0f", str(dead.ip_start + 1)))
    subprocess.run(["ip", "link", "del", dead.bridge], check=True)  # the node dies
    with node_net() as live:
        vm = live.add_vm(1, device=port)
        capture = live.node_capture()
        try:
            mark = marker()
            vm.send(udp_frame(src_mac=vm.mac, dst_mac=live.node_mac, src=vm.address,
                              dst=live.node_address, sport=4000, dport=4001,
                              payload=mark))  # fmt: skip
            assert capture.wait(mark), "the dead node's table dropped the live node's frame"
        finally:
            capture.close()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert dead.table not in tables
