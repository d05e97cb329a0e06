"""The egress decision of a start reaches the VM's DHCP lease: a VM that may go out is
served its gateway (the DHCP router option), one that may not is served none, and the
lease book keeps that gateway across the database's resyncs. Real nftables (a node
table made by ``NodeNetwork.ensure`` in a namespace of the test), the egress decision
of the HKD, the fake backend, a real database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.config import Config
from qvd.hkd.addressing import vm_network
from qvd.hkd.backends import VmSpec
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.dhcp import LeaseBook, StaticLease, VmAddress
from qvd.hkd.egress import Egress, EgressFilter
from qvd.hkd.ports import PortFilter
from qvd.hkd.reconcile import Reconciler
from qvd.hkd.settings import HkdSettings
from tests.hkd.conftest import FakeVma, add_host, add_vm, command, hkd_config
from tests.hkd.egressnet import NODE_ADDRESS, EgressLab, egress_lab
from tests.hkd.test_egress import _osf_property
from tests.hkd.test_reconcile import drive

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

    table = lab.network.table
    egress = Egress(lab.rules(), EgressFilter(table), lambda: Config())
    vma = FakeVma()
    rec = Reconciler(engine, FakeBackend(), add_host(engine), settings, vma,
                     ports=PortFilter(table), egress=egress,
                     before_start=before_start)  # fmt: skip
    out_vm, out_ip = add_vm(engine)
    in_vm, in_ip = add_vm(engine)
    _osf_property(engine, in_vm, "deny")
    for vm_id, ip in ((out_vm, out_ip), (in_vm, in_ip)):
        command(engine, vm_id, "start", rec.host.id)
        vma.alive.add(ip)
        lab.in_node(lambda v=vm_id: drive(rec, v, "running"))  # type: ignore[misc]
    gateways = {lease.ip: lease.gateway for lease in served[-1]}
    assert gateways == {out_ip: NODE_ADDRESS, in_ip: None}

    # the database's resync keeps what the starts decided
    book.sync([VmAddress(out_vm, "x", out_ip), VmAddress(in_vm, "y", in_ip)])
    assert {lease.ip: lease.gateway for lease in book.leases()} == gateways
