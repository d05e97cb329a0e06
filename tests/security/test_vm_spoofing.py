"""Attack test: a desktop forges its Ethernet or IPv4 source, or claims an address by
ARP (the node's, another desktop's, one outside the VM range).

Each "VM" here is a network namespace whose veth is a port of a bridge set up by the
node's own code (``NodeNetwork.ensure``) and admitted to the port filter the way the
HKD admits a VM's port (``PortFilter.admit``). The attacker writes raw frames on its
port; a capture on the receiving side (the other VM's ``eth0``, or the node's bridge
device) proves the forged frame never arrives, while a legitimate frame sent right
after it over the same path does."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.security.hostile_net import (
    FakeVm,
    NodeNet,
    arp_frame,
    never_arrives,
    node_net,
    udp_frame,
)

pytestmark = pytest.mark.root

OUTSIDE = "192.0.2.77"  # TEST-NET-1: written in a frame on our own bridge, never routed


@pytest.fixture
def net(root_only: None) -> Iterator[NodeNet]:
    with node_net() as made:
        yield made


@pytest.fixture
def pair(net: NodeNet) -> tuple[FakeVm, FakeVm]:
    return net.add_vm(1), net.add_vm(2)


def _arp_control(attacker: FakeVm, target_ip: str) -> Callable[[bytes], None]:
    """A legitimate ARP request of the attacker (its own MAC and address)."""

    def send(mark: bytes) -> None:
        attacker.send(arp_frame(src_mac=attacker.mac, sender_mac=attacker.mac,
                                sender_ip=attacker.address, target_ip=target_ip,
                                payload=mark))  # fmt: skip

    return send


def _udp(
    attacker: FakeVm, *, src_mac: str, dst_mac: str, src: str, dst: str
) -> Callable[[bytes], None]:
    def send(mark: bytes) -> None:
        attacker.send(udp_frame(src_mac=src_mac, dst_mac=dst_mac, src=src, dst=dst,
                                sport=4100, dport=4100, payload=mark))  # fmt: skip

    return send


def test_a_vm_cannot_speak_to_another_vm_as_the_node(
    net: NodeNet, pair: tuple[FakeVm, FakeVm]
) -> None:
    attacker, victim = pair
    capture = victim.capture()
    try:
        arrived, forged = never_arrives(
            capture,
            _udp(
                attacker,
                src_mac=attacker.mac,
                dst_mac=victim.mac,
                src=net.node_address,
                dst=victim.address,
            ),
            _arp_control(attacker, victim.address),
        )
    finally:
        capture.close()
    assert arrived, "the legitimate ARP request did not reach the other VM"
    assert not forged, "a frame with the node's source address reached another VM"


@pytest.mark.parametrize("source", ["other VM", "outside the range"])
def test_a_vm_cannot_forge_its_ipv4_source_to_the_node(
    net: NodeNet, pair: tuple[FakeVm, FakeVm], source: str
) -> None:
    attacker, victim = pair
    forged_source = victim.address if source == "other VM" else OUTSIDE
    capture = net.node_capture()
    try:
        arrived, forged = never_arrives(
            capture,
            _udp(
                attacker,
                src_mac=attacker.mac,
                dst_mac=net.node_mac,
                src=forged_source,
                dst=net.node_address,
            ),
            _udp(
                attacker,
                src_mac=attacker.mac,
                dst_mac=net.node_mac,
                src=attacker.address,
                dst=net.node_address,
            ),
        )
    finally:
        capture.close()
    assert arrived, "the VM's own datagram did not reach the node"
    assert not forged, f"a datagram from {forged_source} ({source}) reached the node"


def test_a_vm_cannot_send_from_outside_the_range_to_another_vm(
    net: NodeNet, pair: tuple[FakeVm, FakeVm]
) -> None:
    attacker, victim = pair
    capture = victim.capture()
    try:
        arrived, forged = never_arrives(
            capture,
            _udp(
                attacker, src_mac=attacker.mac, dst_mac=victim.mac, src=OUTSIDE, dst=victim.address
            ),
            _arp_control(attacker, victim.address),
        )
    finally:
        capture.close()
    assert arrived
    assert not forged, "a datagram from outside the VM range reached another VM"


def test_a_vm_cannot_use_another_vms_mac(net: NodeNet, pair: tuple[FakeVm, FakeVm]) -> None:
    attacker, victim = pair
    capture = net.node_capture()
    try:
        arrived, forged = never_arrives(
            capture,
            _udp(
                attacker,
                src_mac=victim.mac,
                dst_mac=net.node_mac,
                src=attacker.address,
                dst=net.node_address,
            ),
            _udp(
                attacker,
                src_mac=attacker.mac,
                dst_mac=net.node_mac,
                src=attacker.address,
                dst=net.node_address,
            ),
        )
    finally:
        capture.close()
    assert arrived
    assert not forged, "a frame with another VM's source MAC reached the node"
    # nor did the bridge learn the victim's MAC on the attacker's port (stealing its traffic)
    fdb = subprocess.run(["bridge", "fdb", "show", "br", net.bridge, "brport", attacker.device],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert victim.mac not in fdb.lower()


@pytest.mark.parametrize("claimed", ["node", "other VM"])
def test_a_vm_cannot_claim_an_address_by_arp(
    net: NodeNet, pair: tuple[FakeVm, FakeVm], claimed: str
) -> None:
    """Gratuitous ARP replies (broadcast) claiming the node's or another VM's address:
    neither the other VM nor the node hears them, so no cache is poisoned."""
    attacker, victim = pair
    address = net.node_address if claimed == "node" else victim.address
    listener = victim if claimed == "node" else None
    capture = listener.capture() if listener is not None else net.node_capture()

    def claim(mark: bytes) -> None:
        attacker.send(arp_frame(src_mac=attacker.mac, sender_mac=attacker.mac,
                                sender_ip=address, target_ip=address, op=2,
                                payload=mark))  # fmt: skip

    try:
        arrived, forged = never_arrives(capture, claim, _arp_control(attacker, address))
    finally:
        capture.close()
    assert arrived
    assert not forged, f"an ARP reply claiming the {claimed}'s address {address} went through"
    neigh = subprocess.run(["ip", "neigh", "show", address, "dev", net.bridge],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert attacker.mac not in neigh.lower()


def test_an_arp_sender_mac_must_be_the_ports_own(net: NodeNet, pair: tuple[FakeVm, FakeVm]) -> None:
    attacker, victim = pair
    capture = net.node_capture()

    def forged_sender(mark: bytes) -> None:
        attacker.send(arp_frame(src_mac=attacker.mac, sender_mac=victim.mac,
                                sender_ip=attacker.address, target_ip=net.node_address,
                                payload=mark))  # fmt: skip

    try:
        arrived, forged = never_arrives(
            capture, forged_sender, _arp_control(attacker, net.node_address)
        )
    finally:
        capture.close()
    assert arrived
    assert not forged


def test_a_released_port_keeps_nothing_and_a_torn_down_network_leaves_nothing(
    net: NodeNet, pair: tuple[FakeVm, FakeVm]
) -> None:
    attacker, victim = pair
    assert set(net.ports.admitted()) == {attacker.device, victim.device}
    net.ports.release(attacker.device)
    net.ports.release(attacker.device)  # idempotent
    listed = subprocess.run(["nft", "list", "table", "bridge", net.network.table],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert attacker.device not in listed
    assert victim.device in listed
    net.network.remove(guard=True)
    for family in ("bridge", "inet"):
        gone = subprocess.run(["nft", "list", "table", family, net.network.table],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert gone.returncode != 0
