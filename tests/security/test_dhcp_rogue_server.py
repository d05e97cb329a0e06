"""Attacks on DHCP between VMs of one node: a VM listening for the others' DHCP
requests (which the firewall's DHCP hole lets onto the bridge) to learn their MACs
and names and to answer them, and a VM acting as a DHCP server (a rogue offer that
would give another VM a route through the attacker).

A DHCP request from a port goes to the node only (never forwarded to another port),
and nothing a VM sends from port 67 reaches another VM. Real nftables on a node
network made by the HKD's code with its DHCP holes, "VMs" as namespaces; each attack
is followed by a legitimate frame over the same path that does arrive."""

from __future__ import annotations

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


@pytest.fixture
def net(root_only: None) -> Iterator[NodeNet]:
    with node_net(dhcp=True) as made:
        yield made


def _arp(sender: FakeVm, target_ip: str) -> Callable[[bytes], None]:
    """A legitimate ARP broadcast of ``sender``: it reaches every port."""

    def send(mark: bytes) -> None:
        sender.send(arp_frame(src_mac=sender.mac, sender_mac=sender.mac,
                              sender_ip=sender.address, target_ip=target_ip,
                              payload=mark))  # fmt: skip

    return send


def _dhcp(sender: FakeVm, *, src: str, sport: int, dport: int) -> Callable[[bytes], None]:
    def send(mark: bytes) -> None:
        sender.send(udp_frame(src_mac=sender.mac, dst_mac="ff:ff:ff:ff:ff:ff", src=src,
                              dst="255.255.255.255", sport=sport, dport=dport,
                              payload=mark))  # fmt: skip

    return send


def test_a_vms_dhcp_request_reaches_no_other_vm(net: NodeNet) -> None:
    asking, listener = net.add_vm(1), net.add_vm(2)
    capture = listener.capture()
    try:
        arrived, leaked = never_arrives(
            capture,
            _dhcp(asking, src="0.0.0.0", sport=68, dport=67),  # noqa: S104
            _arp(asking, listener.address),
        )
    finally:
        capture.close()
    assert arrived
    assert not leaked


def test_a_vm_cannot_answer_another_vms_dhcp(net: NodeNet) -> None:
    rogue, victim = net.add_vm(1), net.add_vm(2)
    capture = victim.capture()
    try:
        arrived, offered = never_arrives(
            capture,
            _dhcp(rogue, src=rogue.address, sport=67, dport=68),
            _arp(rogue, victim.address),
        )
    finally:
        capture.close()
    assert arrived
    assert not offered
