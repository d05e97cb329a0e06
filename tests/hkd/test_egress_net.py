"""Egress on real namespaces: a node's bridge and firewall made by the HKD's own code,
"VMs" on its bridge, an uplink to a namespace that stands for the outside and a second
network of the node (``tests.hkd.egressnet``). No packet leaves the machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hkd.egressnet import (
    NODE_ADDRESS,
    PUBLIC,
    UPLINK_NODE,
    EgressLab,
    egress_lab,
    in_netns,
)

pytestmark = pytest.mark.root


@pytest.fixture
def lab(root_only: None) -> Iterator[EgressLab]:
    with egress_lab() as made:
        yield made


def test_allowed_vm_goes_out_natted_denied_one_does_not(lab: EgressLab) -> None:
    lab.ensure(lab.rules())
    assert lab.forwarding() == "1"
    allowed = lab.add_vm(1, out=True)
    denied = lab.add_vm(2, out=False)
    allowed.set_gateway(NODE_ADDRESS)
    denied.set_gateway(NODE_ADDRESS)  # a route it adds itself leads nowhere
    echo = lab.echo(lab.outside, PUBLIC)
    assert allowed.connect(echo) == UPLINK_NODE  # NATed to the uplink's address
    assert denied.connect(echo) is None
    assert echo.seen == [UPLINK_NODE]
    assert in_netns(lab.node, lambda: lab.egress().allowed()) == {allowed.device: allowed.address}


def test_release_and_turning_off_remove_the_way_out(lab: EgressLab) -> None:
    lab.ensure(lab.rules())
    first = lab.add_vm(1, out=True)
    second = lab.add_vm(2, out=True)
    for vm in (first, second):
        vm.set_gateway(NODE_ADDRESS)
    echo = lab.echo(lab.outside, PUBLIC)
    assert first.connect(echo) == UPLINK_NODE
    lab.release(first)  # its VM stopped: the address leaves the set
    assert first.connect(echo) is None
    assert second.connect(echo) == UPLINK_NODE
    # a restarted HKD re-renders the table with what the kernel holds
    lab.ensure(lab.rules())
    assert second.connect(echo) == UPLINK_NODE
    assert in_netns(lab.node, lambda: lab.egress().allowed()) == {second.device: second.address}
    # egress turned off on the node: the set, the forward rule and the NAT are gone
    lab.ensure(None)
    table = lab.nft()
    assert "egress" not in table
    assert "masquerade" not in table
    assert lab.uplink not in table
    assert second.connect(echo) is None
    # the port filter kept its ports across both re-renders (the first VM's is released)
    assert set(in_netns(lab.node, lambda: lab.ports().admitted())) == {second.device}


def test_admit_changes_a_vms_mind_and_an_address_moves(lab: EgressLab) -> None:
    lab.ensure(lab.rules())
    vm = lab.add_vm(1, out=True)
    vm.set_gateway(NODE_ADDRESS)
    echo = lab.echo(lab.outside, PUBLIC)
    assert vm.connect(echo) == UPLINK_NODE
    lab.admit(vm, out=False)  # restarted under an OSF that now denies
    assert vm.connect(echo) is None
    lab.admit(vm, out=True)
    assert vm.connect(echo) == UPLINK_NODE
    # the same address on another device (a VM deleted without release, its IP reused)
    filt = lab.egress()

    def move() -> dict[str, str]:
        filt.admit("qvdother0", vm.address, out=True)
        return filt.allowed()

    assert in_netns(lab.node, move) == {"qvdother0": vm.address}
    in_netns(lab.node, lambda: filt.release(vm.device))  # the old device: nothing to drop
    assert vm.connect(echo) == UPLINK_NODE
