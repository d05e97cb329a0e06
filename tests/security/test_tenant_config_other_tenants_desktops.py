"""Attack: a tenant administrator uses the configuration rows that now reach the nodes
to change other tenants' desktops, or to give its own desktops a larger CPU share than
everybody else's. Against the real API app and a running HKD (fake backend, real
PostgreSQL): its per-tenant row (``vm.cpus``) reaches only its own desktops; the
global-only ``vm.cpu.weight`` cannot be set for a tenant through the API, and a tenant
row for it written behind the API's back is ignored when a desktop starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from qvd.api import create_app
from qvd.db import DatabaseTarget
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd
from tests.api.asgi import asgi_client
from tests.api.conftest import Api, World, api_config, build_world
from tests.hkd.conftest import FakeVma, command, hkd_config, run_dir, wait_for

__all__ = ["run_dir"]  # the fixture, used below


@pytest.fixture
def setup(
    db: DatabaseTarget, engine: Engine, tmp_path: Path, run_dir: Path
) -> Iterator[tuple[Api, World, Hkd, FakeBackend]]:
    world = build_world(engine)
    backend = FakeBackend()
    hkd = Hkd(hkd_config(run_dir), backend=backend, vma=FakeVma(), target=db)
    hkd.start()
    try:
        with asgi_client(create_app(api_config(tmp_path), engine)) as client:
            yield Api(client), world, hkd, backend
    finally:
        if not hkd.wait(0):
            hkd.halt()


def _started_spec(backend: FakeBackend, vm_id: int) -> Any:
    vm = backend.vms.get(vm_id)
    return vm.spec if vm is not None and vm.running else None


def test_a_tenant_row_reaches_only_that_tenants_desktops(
    setup: tuple[Api, World, Hkd, FakeBackend], engine: Engine
) -> None:
    api, world, hkd, backend = setup
    assert hkd.host is not None
    admin_a = api.login("adminA", "tenantA")
    ok = api.act("config_set", sid=admin_a, arguments={"key": "vm.cpus", "value": "4"})
    assert ok["status"] == 0, ok
    # not another tenant's, not the global share
    other = api.act(
        "config_set", sid=admin_a,
        arguments={"key": "vm.cpus", "value": "8", "tenant_id": world.tenants["B"]},
    )  # fmt: skip
    assert other["status"] == 4230, other
    weight = api.act("config_set", sid=admin_a, arguments={"key": "vm.cpu.weight", "value": "9000"})
    assert weight["status"] != 0, weight
    # a row for the global-only token, written behind the API's back (an old row)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO configs (tenant_id, key, value) VALUES (:t, 'vm.cpu.weight', '9000')"
            ),
            {"t": world.tenants["A"]},
        )
    vm_a, vm_b = world.vms["A"], world.vms["B"]
    command(engine, vm_a, "start", hkd.host.id)
    command(engine, vm_b, "start", hkd.host.id)
    wait_for(
        lambda: _started_spec(backend, vm_a) and _started_spec(backend, vm_b), 15, "both started"
    )
    a, b = _started_spec(backend, vm_a), _started_spec(backend, vm_b)
    assert a.vcpus == 4
    assert b.vcpus == hkd.settings.vcpus != 4
    assert a.cpu_weight == b.cpu_weight == hkd.settings.cpu_weight
