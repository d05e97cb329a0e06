"""Policy fixtures: a real database with the API tests' world (tenants A and B, a VM
each, one running host) and helpers to shape the VMs' runtime."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from qvd.db.models import Policy, VmRuntime
from tests.api.conftest import World, build_world


@pytest.fixture
def fleet(engine: Engine) -> World:  # the tests' database (tests/conftest.engine)
    return build_world(engine)


def set_runtime(engine: Engine, vm_id: int, **values: Any) -> None:
    with Session(engine) as s, s.begin():
        s.execute(update(VmRuntime).where(VmRuntime.vm_id == vm_id).values(**values))


def runtime(engine: Engine, vm_id: int) -> VmRuntime:
    with Session(engine, expire_on_commit=False) as s:
        return s.get_one(VmRuntime, vm_id)


def add_policy(engine: Engine, tenant_id: int, **values: Any) -> int:
    values.setdefault("name", f"p-{values['kind']}")
    values.setdefault("creation_date", dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    with Session(engine) as s, s.begin():
        policy = Policy(tenant_id=tenant_id, **values)
        s.add(policy)
        s.flush()
        return policy.id
