"""A VM name or a login that would add keys to the LXC configuration (a pre-start hook
runs as root on the node) or lead its home out of homefs, inserted straight into the
database past the API's validation: the hook never runs, the VM fails with the reason."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from tests.hkd.conftest import command, runtime, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.security.desktops import node_hkd


def _failure(engine: Engine, vm_id: int) -> str:
    wait_for(lambda: runtime(engine, vm_id)["last_error"] is not None, 60, "the refusal")
    row = runtime(engine, vm_id)
    assert row["vm_state"] == "stopped"
    assert row["host_id"] is None
    return str(row["last_error"])


def _hook(marker: Path) -> str:
    """A line that would run as root on the node (the columns hold 64 characters)."""
    return f"\nlxc.hook.pre-start = /bin/touch {marker}"


def _marker() -> Path:
    return Path(f"/tmp/qvd-owned-{secrets.token_hex(4)}")


def test_a_hook_in_a_vm_name_never_runs(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    marker = _marker()
    with node_hkd(db, engine, lxc_node) as hkd:
        assert hkd.host is not None
        vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1)
        with engine.begin() as conn:
            conn.execute(text("UPDATE vms SET name = :n WHERE id = :v"),
                         {"n": "desk" + _hook(marker), "v": vm_id})  # fmt: skip
        command(engine, vm_id, "start", hkd.host.id)
        reason = _failure(engine, vm_id)
    assert "VM name" in reason
    assert "control character" in reason
    assert not marker.exists()


def test_a_hook_in_a_login_never_runs(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    marker = _marker()
    extra = {"vm.lxc.home.per.user": "1"}
    with node_hkd(db, engine, lxc_node, **extra) as hkd:
        assert hkd.host is not None
        vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1, user_storage=16)
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE users SET login = :l FROM vms WHERE vms.user_id = users.id "
                     "AND vms.id = :v"),
                {"l": "alice" + _hook(marker), "v": vm_id},
            )  # fmt: skip
        command(engine, vm_id, "start", hkd.host.id)
        reason = _failure(engine, vm_id)
    assert "home directory name" in reason
    assert not marker.exists()


def test_a_dot_dot_login_never_maps_a_home_outside_homefs(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    storage = lxc_node.storage
    homefs = storage / "homefs"
    homes_before = {p.name for p in homefs.iterdir()} if homefs.is_dir() else set()
    with node_hkd(db, engine, lxc_node, **{"vm.lxc.home.per.user": "1"}) as hkd:
        assert hkd.host is not None
        for n, login in enumerate(("../../etc", "..", "/"), start=1):
            vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, n, user_storage=16)
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE users SET login = :l FROM vms WHERE vms.user_id = users.id "
                         "AND vms.id = :v"),
                    {"l": login, "v": vm_id},
                )  # fmt: skip
            command(engine, vm_id, "start", hkd.host.id)
            reason = _failure(engine, vm_id)
            assert "home directory name" in reason, reason
            config = hkd.backend.layout.container_dir(vm_id) / "config"  # type: ignore[attr-defined]
            assert not config.exists() or "/etc" not in config.read_text()
    assert not (storage.parent / "etc").exists()
    assert not (storage / "etc").exists()
    assert {p.name for p in (storage / "homefs").iterdir()} == homes_before
