"""A real LXC node (in-process HKD, real containers, real PostgreSQL; under the heavy
lock): ``vm.cpu.weight`` set THROUGH THE API while the node runs reaches the next
start of a desktop (its cgroup's cpu.shares), while a running desktop keeps the weight
it started with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.api import create_app
from qvd.db import DatabaseTarget
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.daemon import Hkd
from tests.api.asgi import asgi_client
from tests.api.conftest import Api, add_admin, api_config
from tests.hkd.conftest import command, state_of, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.security.desktops import node_hkd


@pytest.fixture
def lxc_hkd(db: DatabaseTarget, engine: Engine, lxc_node: LxcNode) -> Iterator[Hkd]:
    with node_hkd(db, engine, lxc_node) as hkd:
        yield hkd


def _shares(hkd: Hkd, vm_id: int) -> str | None:
    backend = hkd.backend
    assert isinstance(backend, LxcBackend)
    return backend.lxc.limit(f"qvd-{vm_id}", "cpu", "cpu.shares")


def _weight(api: Api, sid: str, value: str) -> None:
    r = api.act("config_set", sid=sid, arguments={"key": "vm.cpu.weight", "value": value})
    assert r["status"] == 0, r


def test_a_weight_set_through_the_api_reaches_the_next_start(
    lxc_hkd: Hkd, lxc_node: LxcNode, engine: Engine, tmp_path: Path, test_image: Path
) -> None:
    hkd = lxc_hkd
    assert hkd.host is not None
    host_id = hkd.host.id
    with Session(engine) as session, session.begin():
        add_admin(session, "root", 0)
    vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1)
    with asgi_client(create_app(api_config(tmp_path), engine)) as client:
        api = Api(client)
        root = api.login("root")
        _weight(api, root, "300")
        command(engine, vm_id, "start", host_id)
        wait_for(lambda: state_of(engine, vm_id) == "running", 120, "the desktop running")
        assert _shares(hkd, vm_id) == str(300 * 1024 // 100)
        _weight(api, root, "50")
        # the node has the new row (its live config follows the NOTIFY) ...
        wait_for(lambda: hkd.live.get().get_int("vm.cpu.weight") == 50, 15, "the node's rows")
        assert _shares(hkd, vm_id) == str(300 * 1024 // 100)  # ... the running one keeps its
        command(engine, vm_id, "stop", host_id)
        wait_for(lambda: state_of(engine, vm_id) == "stopped", 120, "the desktop stopped")
        command(engine, vm_id, "start", host_id)
        wait_for(lambda: state_of(engine, vm_id) == "running", 120, "the desktop running again")
        assert _shares(hkd, vm_id) == str(50 * 1024 // 100)
        command(engine, vm_id, "stop", host_id)
        wait_for(lambda: state_of(engine, vm_id) == "stopped", 120, "the desktop stopped")
