"""The reconciler keeps a VM's bridge port admitted exactly while something of the VM
can run: admitted before the backend starts it, released once it is cleaned up. Real
nftables (a node table made by ``NodeNetwork.ensure``), the fake backend, a real
database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.hkd.addressing import host_device, mac_for
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.network import NodeNetwork
from qvd.hkd.ports import Port, PortFilter, read_ports
from qvd.hkd.reconcile import Reconciler
from qvd.hkd.settings import HkdSettings
from tests.hkd.conftest import FakeVma, add_host, add_vm, command, hkd_config, runtime
from tests.hkd.lxcnode import free_subnet
from tests.hkd.test_reconcile import drive

pytestmark = pytest.mark.root


@pytest.fixture
def table(root_only: None) -> Iterator[str]:
    subnet = free_subnet()
    network = NodeNetwork(
        bridge=f"qvdr{secrets.token_hex(3)}",
        host_address=str(subnet.network_address + 2),
        network=subnet,
        ip_start=subnet.network_address + 100,
        vma_port=3030,
        x_port=4100,
    )
    try:
        network.ensure()
        yield network.table
    finally:
        network.remove(guard=True)


def _parts(
    engine: Engine, run_dir: Path, table: str
) -> tuple[Reconciler, FakeBackend, FakeVma, HkdSettings]:
    settings = HkdSettings.from_config(hkd_config(run_dir))
    backend, vma = FakeBackend(), FakeVma()
    rec = Reconciler(engine, backend, add_host(engine), settings, vma, ports=PortFilter(table))
    return rec, backend, vma, settings


def test_a_port_is_admitted_while_its_vm_runs_and_released_after(
    engine: Engine, run_dir: Path, table: str
) -> None:
    rec, _backend, vma, settings = _parts(engine, run_dir, table)
    vm_id, ip = add_vm(engine)
    device = host_device(settings.device_prefix, vm_id)
    command(engine, vm_id, "start", rec.host.id)
    vma.alive.add(ip)
    drive(rec, vm_id, "running")
    assert read_ports(table) == {device: Port(device, mac_for(ip, settings.mac_prefix), ip)}

    command(engine, vm_id, "stop")
    drive(rec, vm_id, "stopped")
    assert read_ports(table) == {}


def test_a_restarted_hkd_releases_the_port_of_a_vm_that_is_no_longer_here(
    engine: Engine, run_dir: Path, table: str
) -> None:
    """A port left in the kernel by an earlier HKD (the VM went while it was down) is
    released when the VM is found not to be this node's."""
    rec, _backend, _vma, settings = _parts(engine, run_dir, table)
    vm_id, ip = add_vm(engine)
    device = host_device(settings.device_prefix, vm_id)
    PortFilter(table).admit(Port(device, mac_for(ip, settings.mac_prefix), ip))
    rec.reconcile(vm_id)  # not assigned to this host
    assert read_ports(table) == {}


def test_a_port_that_cannot_be_filtered_refuses_the_start(
    engine: Engine, run_dir: Path, table: str
) -> None:
    rec, backend, _vma, _settings = _parts(engine, run_dir, f"{table}_missing")
    vm_id, _ip = add_vm(engine)
    command(engine, vm_id, "start", rec.host.id)
    rec.reconcile(vm_id)
    row = runtime(engine, vm_id)
    assert row["vm_state"] == "stopped"
    assert "cannot filter its network port" in str(row["last_error"])
    assert vm_id not in backend.vms  # never started unfiltered
