"""Attack: a VM sends the node's DHCP server a DHCPDECLINE (or DHCPRELEASE) in another
VM's name (the client hardware address inside the message is the victim's MAC, the
Ethernet source its own, which the port filter allows). dnsmasq believes a DECLINE
of a static address and stops offering it for ten minutes: the victim, restarted or
renewing, gets no address.

The bridge filter makes every DHCP message of a port name the port's own MAC as its
client, so the spoofed messages never reach dnsmasq. Real dnsmasq, real nftables on a
node network made by the HKD's code, "VMs" as network namespaces on its bridge."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator

import pytest

from qvd.hkd.dhcp import StaticLease
from qvd.hkd.dnsmasq import Dnsmasq
from tests.conftest import scratch_dir
from tests.hkd.dhcpclient import DECLINE, RELEASE, DhcpClient, bootp, dhcp_node
from tests.security.hostile_net import FakeVm, NodeNet, udp_frame

pytestmark = pytest.mark.root


@pytest.fixture
def served(root_only: None) -> Iterator[tuple[NodeNet, Dnsmasq]]:
    run = scratch_dir(f"qvd-test-dhcp-decline-{os.getpid()}-")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, run, True)
        net, server = stack.enter_context(dhcp_node(run))
        yield net, server


def _offer(vm: FakeVm) -> str | None:
    client = DhcpClient(vm)
    try:
        offer = client.discover(timeout=4)
    finally:
        client.close()
    return None if offer is None else offer.yiaddr


def test_a_vm_cannot_decline_or_release_another_vms_lease(
    served: tuple[NodeNet, Dnsmasq],
) -> None:
    net, server = served
    victim, attacker = net.add_vm(1), net.add_vm(2)
    server.set_leases([StaticLease(mac=vm.mac, ip=vm.address) for vm in (victim, attacker)])
    assert _offer(victim) == victim.address

    for kind in (DECLINE, RELEASE):
        for source in ("0.0.0.0", attacker.address):  # noqa: S104 - a DHCP client's source
            message = bootp(
                secrets.token_bytes(4), victim.mac, kind,
                requested=victim.address, server=net.node_address,
            )  # fmt: skip
            attacker.send(udp_frame(
                src_mac=attacker.mac, dst_mac="ff:ff:ff:ff:ff:ff", src=source,
                dst="255.255.255.255", sport=68, dport=67, payload=message,
            ))  # fmt: skip
    assert _offer(attacker) == attacker.address  # its own messages pass (and came after)
    assert _offer(victim) == victim.address  # the victim is still served
