"""The database's config rows on a running node (issue #17): rows set THROUGH THE API
(the real app, in process) reach a running HKD (fake backend, real PostgreSQL) without
a restart: vm.* settings at the next VM start, per tenant; a restart-only token is
logged once and recorded as pending; NOTIFY wakes the node's watch at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from qvd.api import create_app
from qvd.db import DATABASE_URL_ENV, DatabaseTarget, LiveConfig
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd
from qvd.hkd.liveconfig import ConfigWatch, read_pending_restart
from tests.api.asgi import asgi_client
from tests.api.conftest import Api, World, api_config, build_world
from tests.hkd.conftest import FakeVma, command, hkd_config, wait_for
from tests.node.test_cli import qvd, url_of

_TRANSIENT = (Exception,)


@pytest.fixture
def world(engine: Engine) -> World:
    return build_world(engine)


@pytest.fixture
def api(tmp_path: Path, engine: Engine) -> Iterator[Api]:
    with asgi_client(create_app(api_config(tmp_path), engine)) as client:
        yield Api(client)


@pytest.fixture
def node(db: DatabaseTarget, world: World, run_dir: Path) -> Iterator[tuple[Hkd, FakeBackend]]:
    backend = FakeBackend()
    hkd = Hkd(hkd_config(run_dir), backend=backend, vma=FakeVma(), target=db)
    hkd.start()
    try:
        yield hkd, backend
    finally:
        if not hkd.wait(0):
            hkd.halt()


def _set(api: Api, sid: str, key: str, value: str, **extra: Any) -> None:
    r = api.act("config_set", sid=sid, arguments={"key": key, "value": value, **extra})
    assert r["status"] == 0, r


def _spec_of(backend: FakeBackend, vm_id: int) -> Any:
    vm = backend.vms.get(vm_id)
    return None if vm is None or not vm.running else vm.spec


def test_vm_settings_set_through_the_api_apply_at_the_next_start_per_tenant(
    api: Api, world: World, engine: Engine, node: tuple[Hkd, FakeBackend]
) -> None:
    hkd, backend = node
    assert hkd.host is not None
    root = api.login("root")
    # the node runs already: a global weight, and more CPUs for tenant A only
    _set(api, root, "vm.cpu.weight", "250")
    _set(api, api.login("adminA", "tenantA"), "vm.cpus", "3")
    vm_a, vm_b = world.vms["A"], world.vms["B"]
    command(engine, vm_a, "start", hkd.host.id)
    command(engine, vm_b, "start", hkd.host.id)
    wait_for(lambda: _spec_of(backend, vm_a) and _spec_of(backend, vm_b), 15, "both VMs started")
    a, b = _spec_of(backend, vm_a), _spec_of(backend, vm_b)
    assert (a.cpu_weight, a.vcpus) == (250, 3)
    assert (b.cpu_weight, b.vcpus) == (250, hkd.settings.vcpus)  # tenant B: the node's
    assert hkd.settings.vcpus != 3  # not a coincidence
    assert hkd.settings.cpu_weight == 100


def test_a_bad_row_is_skipped_and_the_node_keeps_going(
    api: Api, world: World, engine: Engine, node: tuple[Hkd, FakeBackend]
) -> None:
    hkd, backend = node
    assert hkd.host is not None
    # a row the API would refuse, written behind its back (an old or hand-made row)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO configs (tenant_id, key, value) VALUES (-1, 'vm.cpu.weight', 'x')")
        )
    vm_a = world.vms["A"]
    command(engine, vm_a, "start", hkd.host.id)
    wait_for(lambda: _spec_of(backend, vm_a) is not None, 15, "the VM started")
    assert _spec_of(backend, vm_a).cpu_weight == hkd.settings.cpu_weight


def test_a_restart_only_token_says_so(
    api: Api,
    world: World,
    engine: Engine,
    node: tuple[Hkd, FakeBackend],
    caplog: Any,
    db: DatabaseTarget,
    tmp_path: Path,
) -> None:
    hkd, _backend = node
    assert hkd.config_watch is not None
    caplog.set_level(logging.WARNING, logger="qvd.hkd.config")
    root = api.login("root")
    listed = api.act("config_get", sid=root, filters={"key": ["l7r.port", "vm.cpu.weight"]})
    assert {r["key"]: r["applies"] for r in listed["rows"]} == {
        "l7r.port": "restart",
        "vm.cpu.weight": "next-start",
    }
    _set(api, root, "l7r.port", "9443")

    def pending() -> list[str] | None:
        with engine.connect() as conn:
            return read_pending_restart(conn, "node1")

    wait_for(lambda: pending() == ["l7r.port"], 15, "the pending restart recorded")
    conf = tmp_path / "node.conf"
    conf.write_text("nodename = node1\n")
    shown = qvd("config", "check", str(conf), "--pending", env={DATABASE_URL_ENV: url_of(db)})
    assert shown.returncode == 0, shown.stderr
    assert "pending restart (rows changed since the daemons started): l7r.port" in shown.stdout
    hkd.config_watch.check()  # looked at again: not logged twice
    said = [r.getMessage() for r in caplog.records if "l7r.port" in r.getMessage()]
    assert len(said) == 1, said
    assert "restart" in said[0]
    # set back: nothing pending any more
    r = api.act("config_delete", sid=root, filters={"key": "l7r.port"})
    assert r["status"] == 0, r
    wait_for(lambda: pending() == [], 15, "the pending list cleared")


def test_notify_wakes_the_watch_at_once(
    db: DatabaseTarget, engine: Engine, world: World, api: Api, run_dir: Path
) -> None:
    """A live config that would never re-read on its own (max age 1 h) and a watch that
    never polls (1 h): only the NOTIFY of the API's change can bring the row in."""
    config = hkd_config(run_dir)
    live = LiveConfig(config, engine, max_age=3600)
    assert live.get().get("l7r.auth.plugins") == ""
    with engine.begin() as conn:
        host_id = conn.execute(text("SELECT id FROM hosts WHERE name = 'node1'")).scalar_one()
    watch = ConfigWatch(
        live, config, target=db, engine=engine, host_id=host_id, poll_delay=3600,
        transient=_TRANSIENT,
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: watch.checks >= 1, 10, "the first check")
        _set(api, api.login("root"), "l7r.auth.plugins", "totp")
        wait_for(lambda: live.get().get("l7r.auth.plugins") == "totp", 10, "the row applied")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
