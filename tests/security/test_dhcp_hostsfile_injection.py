"""Attack: a VM name that carries dnsmasq syntax. The node's DHCP writes one line per
VM into dnsmasq's hosts file; a name with a newline would add a line (a lease for a
MAC the attacker controls: an address on the node's network it was never given), a
name with a comma would add fields (a tag that hands out another lease's route, a
lease time, ``ignore``). Names reach the database from older releases and direct
writes, so the renderer must hold on its own.

The attack runs against a real dnsmasq on a node network made by the HKD's code, the
rows in a real database, the leases made by the HKD's own lease book: the injected
MAC must get no offer, and the comma must not give the attacker a route; the victim's
own lease stays."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

from qvd.hkd.dhcp import LeaseBook, VmAddress, render_hosts
from qvd.hkd.dnsmasq import Dnsmasq
from tests.conftest import scratch_dir
from tests.hkd.dhcpclient import DhcpClient, dhcp_node
from tests.security.hostile_net import FakeVm, NodeNet

pytestmark = pytest.mark.root


@pytest.fixture
def served(root_only: None) -> Iterator[tuple[NodeNet, Dnsmasq, LeaseBook]]:
    run = scratch_dir(f"qvd-test-dhcp-inj-{os.getpid()}-")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, run, True)
        net, server = stack.enter_context(dhcp_node(run))
        book = LeaseBook(net.network.network, "54:52:00", server.set_leases)
        yield net, server, book


def _offer(vm: FakeVm, timeout: float = 4) -> str | None:
    client = DhcpClient(vm)
    try:
        offer = client.discover(timeout)
    finally:
        client.close()
    return None if offer is None else offer.yiaddr


def test_a_newline_in_a_vm_name_adds_no_lease(
    served: tuple[NodeNet, Dnsmasq, LeaseBook],
) -> None:
    net, server, book = served
    victim, attacker = net.add_vm(1), net.add_vm(2)  # the attacker's MAC has no VM row
    name = f"desk\n{attacker.mac},{attacker.address}\n#"
    book.sync([VmAddress(10000, name, victim.address)])
    assert _offer(attacker) is None
    assert _offer(victim) == victim.address  # the VM keeps its lease (without a name)
    hosts = server.settings.hosts_file.read_text()
    assert hosts == render_hosts(book.leases())
    assert hosts.count("\n") == 1  # one VM, one line
    assert attacker.mac not in hosts


def test_a_comma_in_a_vm_name_adds_no_option(
    served: tuple[NodeNet, Dnsmasq, LeaseBook],
) -> None:
    net, server, book = served
    egress, attacker = net.add_vm(1), net.add_vm(2)
    # the egress VM's lease carries a tag that gives a route; the attacker names it
    book.before_start(10000, "out", mac=egress.mac, ip=egress.address, gateway=net.node_address)
    tag = server.settings.hosts_file.read_text().split(",")[1]
    assert tag.startswith("set:")
    book.sync([
        VmAddress(10000, "out", egress.address),
        VmAddress(10001, f"desk,{tag}", attacker.address),
    ])  # fmt: skip
    client = DhcpClient(attacker)
    try:
        ack = client.lease()
    finally:
        client.close()
    assert ack is not None
    assert ack.yiaddr == attacker.address
    assert ack.router == []  # no route out for a VM its start did not give one
    assert server.settings.hosts_file.read_text().count(tag) == 1
