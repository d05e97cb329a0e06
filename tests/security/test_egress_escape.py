"""Attack tests against a node whose egress is on: a desktop whose OSF or tenant is
denied adds a default route through the node itself; a desktop that may go out tries
the node's other networks, private networks behind the uplink and the node's own
uplink address; a neighbour on the uplink routes the VM network through the node to
open connections into desktops.

Real namespaces made by the test (``tests.hkd.egressnet``): the node's network by the
HKD's own code, an "outside" at the far end of its uplink and a second network of the
node. No packet leaves the machine. Each refusal is paired with a control that shows
the same path works for what is allowed."""

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
    run_in,
)

pytestmark = pytest.mark.root


@pytest.fixture
def lab(root_only: None) -> Iterator[EgressLab]:
    with egress_lab() as made:
        made.ensure(made.rules())
        yield made


def test_a_denied_desktop_with_its_own_route_stays_in(lab: EgressLab) -> None:
    allowed = lab.add_vm(1, out=True)
    denied = lab.add_vm(2, out=False)  # its OSF or tenant says deny: no gateway given
    allowed.set_gateway(NODE_ADDRESS)
    denied.set_gateway(NODE_ADDRESS)  # root in the desktop adds it anyway
    # the far end knows the way back (a router that does): un-NATed packets would do
    run_in(lab.outside, "ip", "route", "add", str(VM_NET), "via", UPLINK_NODE)
    echo = lab.echo(lab.outside, PUBLIC)
    assert denied.connect(echo) is None
    assert allowed.connect(echo) == UPLINK_NODE  # the control
    assert echo.seen == [UPLINK_NODE]


def test_an_allowed_desktop_never_reaches_the_nodes_other_networks(lab: EgressLab) -> None:
    vm = lab.add_vm(1, out=True)
    vm.set_gateway(NODE_ADDRESS)
    lan = lab.echo(lab.lan, LAN_FAR)  # another network of the node
    private = lab.echo(lab.outside, PRIVATE_OUTSIDE)  # behind the uplink, but private
    node_uplink = lab.echo(lab.node, UPLINK_NODE)  # the node itself, on its uplink
    public = lab.echo(lab.outside, PUBLIC)
    for target in (lan, private, node_uplink):
        assert vm.connect(target) is None, target.address
        assert target.seen == []
    assert vm.connect(public) == UPLINK_NODE  # the control: the path works
    far_end = lab.echo(lab.outside, UPLINK_FAR)  # a public-range host on the uplink's link
    assert vm.connect(far_end) == UPLINK_NODE


def test_nothing_new_is_routed_into_the_desktops(lab: EgressLab) -> None:
    vm = lab.add_vm(1, out=True)
    vm.set_gateway(NODE_ADDRESS)
    inside = lab.echo(vm.ns, vm.address)
    # a neighbour on the uplink routes the VM network through the node
    run_in(lab.outside, "ip", "route", "add", str(VM_NET), "via", UPLINK_NODE)
    outsider = Vm(ns=lab.outside, device="eth0", mac="", address=UPLINK_FAR)
    assert outsider.connect(inside) is None
    assert inside.seen == []
    # the control: answers to the desktop's own connections do come back
    echo = lab.echo(lab.outside, PUBLIC)
    assert vm.connect(echo) == UPLINK_NODE
