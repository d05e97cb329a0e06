"""The reconciler decides each VM's egress at its start and keeps the allowed set in step
with its port: a gateway in the spec and the address in the set for a VM that may go
out, neither for one that may not, the address gone once the VM is released. Real
nftables (a node table made by ``NodeNetwork.ensure`` in a namespace of the test), the
fake backend, a real database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.config import Config
from qvd.hkd.addressing import host_device
from qvd.hkd.backends import VmSpec
from qvd.hkd.backends.fake import FakeBackend
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


def egress_reconciler(
    engine: Engine,
    run_dir: Path,
    lab: EgressLab,
    config: Config,
    before_start: Callable[[VmSpec], None] = lambda spec: None,
    dns_servers: tuple[str, ...] = (),
) -> tuple[Reconciler, FakeBackend, FakeVma, HkdSettings]:
    settings = HkdSettings.from_config(hkd_config(run_dir))
    backend, vma = FakeBackend(), FakeVma()
    table = lab.network.table
    egress = Egress(lab.rules(), EgressFilter(table), lambda: config)
    rec = Reconciler(engine, backend, add_host(engine), settings, vma, ports=PortFilter(table),
                     egress=egress, before_start=before_start,
                     dns_servers=dns_servers)  # fmt: skip
    return rec, backend, vma, settings


def start_out_and_in(
    engine: Engine, rec: Reconciler, vma: FakeVma, lab: EgressLab
) -> tuple[tuple[int, str], tuple[int, str]]:
    """Start a VM that may go out and one whose OSF denies it: (id, address) of each."""
    out_vm, out_ip = add_vm(engine)
    in_vm, in_ip = add_vm(engine)
    _osf_property(engine, in_vm, "deny")
    for vm_id, ip in ((out_vm, out_ip), (in_vm, in_ip)):
        command(engine, vm_id, "start", rec.host.id)
        vma.alive.add(ip)
        lab.in_node(lambda v=vm_id: drive(rec, v, "running"))  # type: ignore[misc]
    return (out_vm, out_ip), (in_vm, in_ip)


def test_gateway_and_allowed_set_follow_the_decision(
    engine: Engine, run_dir: Path, lab: EgressLab
) -> None:
    rec, backend, vma, settings = egress_reconciler(engine, run_dir, lab, Config())
    (out_vm, out_ip), (in_vm, _in_ip) = start_out_and_in(engine, rec, vma, lab)
    assert backend.vms[out_vm].spec.network.gateway == NODE_ADDRESS
    assert backend.vms[in_vm].spec.network.gateway is None
    allowed = lab.in_node(EgressFilter(lab.network.table).allowed)
    assert allowed == {host_device(settings.device_prefix, out_vm): out_ip}
    # a second pass changes nothing
    lab.in_node(lambda: rec.reconcile(out_vm))
    assert lab.in_node(EgressFilter(lab.network.table).allowed) == allowed

    command(engine, out_vm, "stop")
    lab.in_node(lambda: drive(rec, out_vm, "stopped"))
    assert lab.in_node(EgressFilter(lab.network.table).allowed) == {}


def test_only_a_vm_that_may_go_out_is_given_the_nodes_dns(
    engine: Engine, run_dir: Path, lab: EgressLab
) -> None:
    rec, backend, vma, _settings = egress_reconciler(
        engine, run_dir, lab, Config(), dns_servers=(NODE_ADDRESS,)
    )
    (out_vm, _out_ip), (in_vm, _in_ip) = start_out_and_in(engine, rec, vma, lab)
    assert backend.vms[out_vm].spec.network.dns == (NODE_ADDRESS,)
    assert backend.vms[in_vm].spec.network.dns == ()


def test_a_tenant_that_opts_out(engine: Engine, run_dir: Path, lab: EgressLab) -> None:
    config = Config().with_db({}, {1: {"vm.network.egress.allow": "0"}})
    rec, backend, vma, _settings = egress_reconciler(engine, run_dir, lab, config)
    vm_id, ip = add_vm(engine)  # tenant 1
    command(engine, vm_id, "start", rec.host.id)
    vma.alive.add(ip)
    lab.in_node(lambda: drive(rec, vm_id, "running"))
    assert backend.vms[vm_id].spec.network.gateway is None
    assert lab.in_node(EgressFilter(lab.network.table).allowed) == {}
