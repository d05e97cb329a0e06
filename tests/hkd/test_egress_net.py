"""Egress on real namespaces: a node's bridge and firewall made by the HKD's own code,
"VMs" on its bridge, an uplink to a namespace that stands for the outside and a second
network of the node (``tests.hkd.egressnet``). No packet leaves the machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hkd.egressnet import (
    LAN_FAR,
    NODE_ADDRESS,
    PRIVATE_OUTSIDE,
    PUBLIC,
    UPLINK_FAR,
    UPLINK_NODE,
    VM_NET,
    EgressLab,
    Vm,
    egress_lab,
    in_netns,
    run_in,
)

pytestmark = pytest.mark.root


@pytest.fixture
def lab(root_only: None) -> Iterator[EgressLab]:
    with egress_lab() as made:
        yield made


def test_egress_off_no_route_and_nothing_forwarded(lab: EgressLab) -> None:
    lab.ensure(None)
    vm = lab.add_vm(1, out=False)
    echo = lab.echo(lab.outside, PUBLIC)
    assert vm.route(PUBLIC) == ""  # no gateway: no route out at all
    assert vm.connect(echo) is None
    # even with a route the VM adds itself, and forwarding on in the node's namespace
    vm.set_gateway(NODE_ADDRESS)
    assert f"via {NODE_ADDRESS} dev eth0" in vm.route(PUBLIC)
    run_in(lab.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    assert lab.forwarding() == "1"
    assert vm.connect(echo) is None
    assert echo.seen == []
    table = lab.nft()
    assert "egress" not in table
    assert "masquerade" not in table


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


def test_never_the_nodes_other_networks_nor_denied_destinations(lab: EgressLab) -> None:
    lab.ensure(lab.rules())
    vm = lab.add_vm(1, out=True)
    vm.set_gateway(NODE_ADDRESS)
    lan = lab.echo(lab.lan, LAN_FAR)
    private = lab.echo(lab.outside, PRIVATE_OUTSIDE)  # behind the uplink, but private
    far_end = lab.echo(lab.outside, UPLINK_FAR)  # the uplink's own link: a 198.18/15 host
    public = lab.echo(lab.outside, PUBLIC)
    assert vm.connect(lan) is None
    assert lan.seen == []
    assert vm.connect(private) is None
    assert private.seen == []
    assert vm.connect(public) == UPLINK_NODE  # the control: the path works
    assert vm.connect(far_end) == UPLINK_NODE  # not in the deny list: reachable
    # the node's own address on its uplink is no service for desktops either
    node_uplink = lab.echo(lab.node, UPLINK_NODE)
    assert vm.connect(node_uplink) is None
    assert node_uplink.seen == []


def test_nothing_new_is_routed_into_the_vm_network(lab: EgressLab) -> None:
    lab.ensure(lab.rules())
    vm = lab.add_vm(1, out=True)
    vm.set_gateway(NODE_ADDRESS)
    inside = lab.echo(vm.ns, vm.address)
    # the outside routes the VM network to the node (a LAN neighbour could)
    run_in(lab.outside, "ip", "route", "add", str(VM_NET), "via", UPLINK_NODE)
    outsider = Vm(ns=lab.outside, device="eth0", mac="", address=UPLINK_FAR)
    assert outsider.connect(inside) is None
    assert inside.seen == []


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
