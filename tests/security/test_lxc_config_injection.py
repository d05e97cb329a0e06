"""A VM name or a login that would add keys to the LXC configuration (a pre-start hook
runs as root on the node) or lead its home out of homefs, inserted straight into the
database past the API's validation (and past the database's own name checks, as in a
database written by an older version): the hook never runs, the VM fails with the
reason. The HKD refuses such stored names before the backend; the backend tests at the
end prove that the LXC backend refuses them too, on its own."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.hkd.backends.base import HomeSpec, NetworkSpec, TerminalBackendError, VmSpec
from tests.hkd.conftest import command, runtime, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.security.desktops import node_hkd


def _without_name_checks(engine: Engine) -> None:
    """The database as an older version left it: no name rules of its own."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE vms DROP CONSTRAINT IF EXISTS ck_vms_name_printable"))
        conn.execute(text("ALTER TABLE users DROP CONSTRAINT IF EXISTS ck_users_login_printable"))


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
        _without_name_checks(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE vms SET name = :n WHERE id = :v"),
                         {"n": "desk" + _hook(marker), "v": vm_id})  # fmt: skip
        command(engine, vm_id, "start", hkd.host.id)
        reason = _failure(engine, vm_id)
    assert "VM name" in reason
    assert not marker.exists()


def test_a_hook_in_a_login_never_runs(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    marker = _marker()
    extra = {"vm.lxc.home.per.user": "1"}
    with node_hkd(db, engine, lxc_node, **extra) as hkd:
        assert hkd.host is not None
        vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1, user_storage=16)
        _without_name_checks(engine)
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE users SET login = :l FROM vms WHERE vms.user_id = users.id "
                     "AND vms.id = :v"),
                {"l": "alice" + _hook(marker), "v": vm_id},
            )  # fmt: skip
        command(engine, vm_id, "start", hkd.host.id)
        reason = _failure(engine, vm_id)
    assert "alice" in reason
    assert not marker.exists()


def test_a_dot_dot_login_never_maps_a_home_outside_homefs(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    storage = lxc_node.storage
    homefs = storage / "homefs"
    homes_before = {p.name for p in homefs.iterdir()} if homefs.is_dir() else set()
    with node_hkd(db, engine, lxc_node, **{"vm.lxc.home.per.user": "1"}) as hkd:
        assert hkd.host is not None
        _without_name_checks(engine)
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
            assert repr(login) in reason, reason
            config = hkd.backend.layout.container_dir(vm_id) / "config"  # type: ignore[attr-defined]
            assert not config.exists() or "/etc" not in config.read_text()
    assert not (storage / "etc").exists()
    assert {p.name for p in (storage / "homefs").iterdir()} == homes_before


# ---- the LXC backend on its own (what reaches it if a check above is ever missed) -----
def _spec(lxc_node: LxcNode, image: Path, **changes: object) -> VmSpec:
    spec = VmSpec(
        vm_id=10077, name="desk", di_id=10077, image=image, memory_mib=128, vcpus=1,
        cpu_weight=100, vma_secret="s" * 64,
        network=NetworkSpec(bridge=lxc_node.bridge, address=lxc_node.vm_address(77),
                            prefix=24, mac="54:52:00:00:00:77", host_device="qvd10077"),
    )  # fmt: skip
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def _home(login: str) -> HomeSpec:
    return HomeSpec(login=login, size_mib=16)


def _image(lxc_node: LxcNode, test_image: Path) -> Path:
    images = lxc_node.storage / "images"
    images.mkdir(parents=True, exist_ok=True)
    target = images / f"10077-{test_image.name}"
    if not target.exists():
        target.hardlink_to(test_image)
    return target


def test_the_backend_refuses_a_hook_in_a_name_or_login(lxc_node: LxcNode, test_image: Path) -> None:
    backend = lxc_node.backend(**{"vm.lxc.home.per.user": "1"})
    image = _image(lxc_node, test_image)
    marker = _marker()
    config = backend.layout.container_dir(10077) / "config"
    with pytest.raises(TerminalBackendError, match=r"VM name .* control character"):
        backend.prepare(_spec(lxc_node, image, name="desk" + _hook(marker)))
    assert not config.exists()
    with pytest.raises(TerminalBackendError, match="is not a valid path component"):
        backend.prepare(_spec(lxc_node, image, home=_home("alice" + _hook(marker))))
    assert not config.exists() or "hook" not in config.read_text()
    backend.prepare(_spec(lxc_node, image, name="desk-ok"))  # and a plain one starts
    lxc_node.network().ensure()  # the bridge (the HKD makes it; lxc_node.clean removes it)
    try:
        backend.start(_spec(lxc_node, image, name="desk-ok"))
        assert "hook" not in config.read_text()
    finally:
        backend.kill(10077)
        wait_for(lambda: not backend.is_alive(10077), 30, "the container to end")
        backend.cleanup(10077)
    assert not marker.exists()


@pytest.mark.parametrize("login", ["../../etc", "..", "/", "a/../../b"])
def test_the_backend_never_maps_a_home_outside_homefs(
    lxc_node: LxcNode, test_image: Path, login: str
) -> None:
    backend = lxc_node.backend(**{"vm.lxc.home.per.user": "1"})
    image = _image(lxc_node, test_image)
    before = {p.name for p in backend.layout.homefs.iterdir()}
    with pytest.raises(TerminalBackendError, match="is not a valid path component"):
        backend.prepare(_spec(lxc_node, image, home=_home(login)))
    assert {p.name for p in backend.layout.homefs.iterdir()} == before
    assert not (lxc_node.storage / "etc").exists()
