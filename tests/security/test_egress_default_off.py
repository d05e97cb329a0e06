"""Attack test: a desktop tries to reach the outside of a node whose egress is off (the
default), by adding a default route through the node itself, with IPv4 forwarding on
in the node's namespace; and the database (a superadmin's global row, a tenant admin's
row) tries to turn the node's egress on.

The node's network is made by the HKD's own code inside a namespace the test creates,
with an uplink to another namespace that stands for the outside (``tests.hkd.egressnet``):
no packet leaves the machine. Egress is a node's decision (node-local tokens in its
node.conf): a database row never turns it on, and without it the firewall routes
nothing from a desktop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qvd.config import Config
from qvd.hkd.egress import Egress, EgressSettings
from tests.hkd.egressnet import (
    NODE_ADDRESS,
    PUBLIC,
    UPLINK_NODE,
    VM_NET,
    EgressLab,
    egress_lab,
    run_in,
)

pytestmark = pytest.mark.root


@pytest.fixture
def lab(root_only: None) -> Iterator[EgressLab]:
    with egress_lab() as made:
        yield made


def _node_as_the_hkd_builds_it(lab: EgressLab, config: Config) -> str | None:
    """The node's network and a VM's gateway, decided the way the daemon and the
    reconciler do from ``config``; returns the gateway the VM gets."""
    rules = EgressSettings.from_config(config).node_rules(
        bridge=lab.network.bridge, network=VM_NET, node_address=NODE_ADDRESS
    )
    lab.ensure(rules)
    if rules is None:
        return None
    gateway, _ = Egress(rules, lab.egress(), lambda: config).gateway_for(1, [])
    return gateway


def test_database_rows_cannot_turn_a_nodes_egress_on(lab: EgressLab) -> None:
    wanted = {
        "vm.network.egress.enable": "1",
        "vm.network.egress.uplink": lab.uplink,
        "vm.network.egress.deny": "",
        "vm.network.egress.allow": "1",
    }
    config = Config().with_db(wanted, {1: wanted})
    gateway = _node_as_the_hkd_builds_it(lab, config)
    vm = lab.add_vm(1, out=gateway is not None)
    vm.set_gateway(gateway)
    echo = lab.echo(lab.outside, PUBLIC)
    assert gateway is None
    assert vm.route(PUBLIC) == ""  # no route out at all
    assert vm.connect(echo) is None
    table = lab.nft()
    assert "masquerade" not in table
    assert lab.uplink not in table


def test_a_desktop_routing_through_its_node_reaches_nothing(lab: EgressLab) -> None:
    gateway = _node_as_the_hkd_builds_it(lab, Config())
    vm = lab.add_vm(1, out=gateway is not None)
    echo = lab.echo(lab.outside, PUBLIC)
    # root in the desktop adds the route itself; someone turned forwarding on
    vm.set_gateway(NODE_ADDRESS)
    assert f"via {NODE_ADDRESS} dev eth0" in vm.route(PUBLIC)
    run_in(lab.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    assert lab.forwarding() == "1"
    assert vm.connect(echo) is None
    assert echo.seen == []
    # the control: the same path carries a desktop's traffic once the node allows it
    lab.ensure(lab.rules())
    lab.admit(vm, out=True)
    assert vm.connect(echo) == UPLINK_NODE
