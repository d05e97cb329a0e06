"""Attack test: a desktop uses IPv6 (link-local or multicast) to reach another desktop
or the node, around the IPv4-only filter.

Same set-up as ``test_vm_spoofing``: namespaces on a bridge made by the node's own
code, ports admitted as the HKD admits a VM's port. Each IPv6 frame is sent with the
attacker's own, correct MAC (so only the IPv6 rule can stop it), followed by a
legitimate ARP request over the same path; a capture on the receiving side shows the
ARP request and never the IPv6 frame."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.hostile_net import (
    FakeVm,
    NodeNet,
    arp_frame,
    icmp6_echo_frame,
    link_local,
    never_arrives,
    node_net,
    socket_in,
)

pytestmark = pytest.mark.root


@pytest.fixture
def net(root_only: None) -> Iterator[NodeNet]:
    with node_net() as made:
        yield made


@pytest.fixture
def pair(net: NodeNet) -> tuple[FakeVm, FakeVm]:
    return net.add_vm(1), net.add_vm(2)


def _arp(attacker: FakeVm, target_ip: str, mark: bytes) -> None:
    attacker.send(
        arp_frame(
            src_mac=attacker.mac,
            sender_mac=attacker.mac,
            sender_ip=attacker.address,
            target_ip=target_ip,
            payload=mark,
        )
    )


def _received(sock: socket.socket, mark: bytes) -> bool:
    """Whether ``mark`` comes in before the socket's timeout (other datagrams skipped)."""
    try:
        while sock.recv(2048) != mark:
            pass
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("to", ["other VM", "node", "all nodes (multicast)"])
def test_ipv6_from_a_vm_reaches_nobody(net: NodeNet, pair: tuple[FakeVm, FakeVm], to: str) -> None:
    attacker, victim = pair
    if to == "other VM":
        dst_mac, dst, capture = victim.mac, link_local(victim.mac), victim.capture()
    elif to == "node":
        dst_mac, dst, capture = net.node_mac, link_local(net.node_mac), net.node_capture()
    else:
        dst_mac, dst, capture = "33:33:00:00:00:01", "ff02::1", victim.capture()
    target_ip = victim.address if to != "node" else net.node_address

    def echo(mark: bytes) -> None:
        attacker.send(
            icmp6_echo_frame(
                src_mac=attacker.mac,
                dst_mac=dst_mac,
                src=link_local(attacker.mac),
                dst=dst,
                payload=mark,
            )
        )

    try:
        arrived, forged = never_arrives(capture, echo, lambda m: _arp(attacker, target_ip, m))
    finally:
        capture.close()
    assert arrived, "the legitimate ARP request did not arrive"
    assert not forged, f"an IPv6 echo request from a VM reached the {to}"


def test_the_ipv6_stack_of_a_vm_cannot_reach_another_vm(
    net: NodeNet, pair: tuple[FakeVm, FakeVm]
) -> None:
    """The same with the kernels' own stacks: a UDP datagram from one VM to the other's
    link-local address never reaches the listening socket."""
    attacker, victim = pair
    address = link_local(victim.mac)
    # both link-local addresses must be usable (DAD done) before the test means anything
    end = time.monotonic() + 20
    for vm in (victim, attacker):
        while True:
            shown = vm.run("ip", "-6", "addr", "show", "dev", "eth0")
            if link_local(vm.mac) in shown and "tentative" not in shown:
                break
            if time.monotonic() > end:
                pytest.fail(f"{vm.ns} never got its link-local address {link_local(vm.mac)}")
            time.sleep(0.1)
    listening = socket_in(victim.ns, socket.AF_INET6, socket.SOCK_DGRAM)
    sending = socket_in(attacker.ns, socket.AF_INET6, socket.SOCK_DGRAM)
    sending4 = socket_in(attacker.ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        listening.bind(("::", 0))
        port = listening.getsockname()[1]
        listening.settimeout(3)
        mark = b"QVD-IPV6-" + secrets.token_bytes(8)
        for _ in range(3):
            sending.sendto(mark, (address, port, 0, attacker.eth0_index()))
        assert not _received(listening, mark), "a VM reached another VM over IPv6"
        # positive control over the same two ports: IPv4 between VMs is dropped too, but
        # the attacker's ARP request reaches the victim and its answer comes back
        sending4.sendto(b"x", (victim.address, port))
        end = time.monotonic() + 10
        while victim.mac not in attacker.run("ip", "neigh", "show", victim.address).lower():
            if time.monotonic() > end:
                pytest.fail("the attacker never resolved the victim's address by ARP")
            time.sleep(0.05)
    finally:
        for sock in (listening, sending, sending4):
            sock.close()


def test_ipv6_is_off_on_the_bridge_and_the_vm_ports(
    net: NodeNet, pair: tuple[FakeVm, FakeVm]
) -> None:
    """The second layer: the node has no IPv6 address on the bridge at all, and the
    VMs' host devices have IPv6 turned off."""
    for device in (net.bridge, *(vm.device for vm in pair)):
        knob = Path(f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6")
        assert knob.read_text().strip() == "1", device
    addresses = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", net.bridge],
                               capture_output=True, text=True, check=True)  # fmt: skip
    assert addresses.stdout.strip() == ""
