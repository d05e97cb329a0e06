"""The egress decision of a start reaches the VM's DHCP lease: a VM that may go out is
served its gateway (the DHCP router option), one that may not is served none, and the
lease book keeps that gateway across the database's resyncs and an HKD's restart. Real
nftables (a node table made by ``NodeNetwork.ensure`` in a namespace of the test), the
egress decision of the HKD, the fake backend, a real database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.config import Config
from qvd.hkd.addressing import vm_network
from qvd.hkd.backends import VmSpec
from qvd.hkd.dhcp import DhcpSettings, LeaseBook, StaticLease, VmAddress
from qvd.hkd.egress import Egress, EgressFilter
from qvd.hkd.nodedhcp import NodeDhcp
from qvd.hkd.settings import HkdSettings
from tests.hkd.conftest import hkd_config
from tests.hkd.egressnet import NODE_ADDRESS, EgressLab, egress_lab
from tests.hkd.test_egress_reconcile import egress_reconciler, start_out_and_in

pytestmark = pytest.mark.root


@pytest.fixture
def lab(root_only: None) -> Iterator[EgressLab]:
    with egress_lab() as made:
        made.ensure(made.rules())
        yield made


def test_a_desktop_that_may_go_out_is_served_its_route(
    engine: Engine, run_dir: Path, lab: EgressLab
) -> None:
    settings = HkdSettings.from_config(hkd_config(run_dir))
    served: list[list[StaticLease]] = []
    book = LeaseBook(vm_network(settings.ip_start, settings.netmask), settings.mac_prefix,
                     served.append)  # fmt: skip

    def before_start(spec: VmSpec) -> None:
        net = spec.network
        book.before_start(spec.vm_id, spec.name, mac=net.mac, ip=net.address,
                          gateway=net.gateway)  # fmt: skip

    rec, _, vma, _ = egress_reconciler(engine, run_dir, lab, Config(), before_start)
    (out_vm, out_ip), (in_vm, in_ip) = start_out_and_in(engine, rec, vma, lab)
    gateways = {lease.ip: lease.gateway for lease in served[-1]}
    assert gateways == {out_ip: NODE_ADDRESS, in_ip: None}

    # the database's resync keeps what the starts decided
    book.sync([VmAddress(out_vm, "x", out_ip), VmAddress(in_vm, "y", in_ip)])
    assert {lease.ip: lease.gateway for lease in book.leases()} == gateways


def test_an_hkd_that_restarts_serves_a_running_desktop_its_route(
    engine: Engine, run_dir: Path, lab: EgressLab
) -> None:
    """The starts were an earlier HKD's: the new one's leases take each VM's gateway
    from the node's egress set, so a renewal does not take the route away."""
    config = hkd_config(run_dir)
    settings = HkdSettings.from_config(config)
    rec, _, vma, _ = egress_reconciler(engine, run_dir, lab, Config())
    (_, out_ip), (_, in_ip) = start_out_and_in(engine, rec, vma, lab)

    network = vm_network(settings.ip_start, settings.netmask)
    dhcp_settings = DhcpSettings.from_config(
        config, server_address=str(network.network_address + 1), network=network
    )
    egress = Egress(lab.rules(), EgressFilter(lab.network.table), lambda: Config())
    dhcp = NodeDhcp(dhcp_settings, engine, mac_prefix=settings.mac_prefix,
                    device_prefix=settings.device_prefix, egress=egress)  # fmt: skip
    lab.in_node(lambda: dhcp.sync(adopt=True))
    gateways = {lease.ip: lease.gateway for lease in dhcp.leases.leases()}
    assert gateways == {out_ip: NODE_ADDRESS, in_ip: None}
    dhcp.sync()  # and keeps it at the next poll
    assert {lease.ip: lease.gateway for lease in dhcp.leases.leases()} == gateways
