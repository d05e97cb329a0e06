"""Names stored before the name rules never reach the backend as a path or a line of a
configuration file: the HKD refuses the start and says why (real database, fake
backend). A login reaches the backend only as data (``HomeSpec.login``): how a home is
named is the backend's, which refuses a login it cannot store (the LXC backend's
refusal: tests/security/test_lxc_config_injection.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, text

from qvd.hkd.backends.base import HomeSpec
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.reconcile import Reconciler, stored_name_problem
from qvd.hkd.settings import HkdSettings
from qvd.hkd.store import VmView
from tests.hkd.conftest import FakeVma, add_host, add_vm, command, hkd_config, runtime


def _parts(engine: Engine, run_dir: Path) -> tuple[Reconciler, FakeBackend]:
    host = add_host(engine)
    backend = FakeBackend()
    settings = HkdSettings.from_config(hkd_config(run_dir))
    return Reconciler(engine, backend, host, settings, FakeVma()), backend


def _start_refused(engine: Engine, rec: Reconciler, backend: FakeBackend, vm_id: int) -> str:
    command(engine, vm_id, "start", rec.host.id)
    outcome = rec.reconcile(vm_id)
    row = runtime(engine, vm_id)
    assert outcome.state == "stopped"
    assert row["vm_state"] == "stopped"
    assert [c for c in backend.calls if c[0] in ("prepare", "start")] == []
    return str(row["last_error"])


def test_a_di_file_name_with_a_path_is_refused(engine: Engine, run_dir: Path) -> None:
    rec, backend = _parts(engine, run_dir)
    vm_id, _ = add_vm(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE dis SET path = '../../../etc/shadow' WHERE id = "
                "(SELECT t.di_id FROM di_tags t JOIN vms v ON v.osf_id = t.osf_id "
                "WHERE v.id = :v LIMIT 1)"
            ),
            {"v": vm_id},
        )
    error = _start_refused(engine, rec, backend, vm_id)
    assert "'../../../etc/shadow' is not a valid path component" in error


def test_a_home_is_asked_for_with_its_login_and_size(engine: Engine, run_dir: Path) -> None:
    rec, backend = _parts(engine, run_dir)
    vm_id, _ = add_vm(engine, user_storage=100, login="jo.doe@example.com")
    command(engine, vm_id, "start", rec.host.id)
    assert rec.reconcile(vm_id).state == "starting"
    assert backend.vms[vm_id].spec.home == HomeSpec(login="jo.doe@example.com", size_mib=100)


def test_no_storage_no_home(engine: Engine, run_dir: Path) -> None:
    rec, backend = _parts(engine, run_dir)
    vm_id, _ = add_vm(engine, user_storage=0)
    command(engine, vm_id, "start", rec.host.id)
    assert rec.reconcile(vm_id).state == "starting"
    assert backend.vms[vm_id].spec.home is None


def test_a_backend_refusing_the_login_stops_the_vm_with_its_reason(
    engine: Engine, run_dir: Path
) -> None:
    rec, backend = _parts(engine, run_dir)
    vm_id, _ = add_vm(engine, user_storage=100, login="../../etc")
    backend.fail_next("prepare", terminal=True)
    command(engine, vm_id, "start", rec.host.id)
    assert rec.reconcile(vm_id).state == "stopped"
    row = runtime(engine, vm_id)
    assert row["vm_state"] == "stopped"
    assert "injected failure of prepare" in str(row["last_error"])
    assert [c[0] for c in backend.calls if c[1] == vm_id] == ["prepare", "cleanup"]


def _view(**changes: object) -> VmView:
    now = dt.datetime.now(dt.UTC)
    view = VmView(vm_id=10000, name="desk", login="bob", osf_id=1, memory_mb=128,
                  user_storage_mb=0, di_tag="default", ip="10.0.0.5", host_id=None,
                  vm_state="stopped", vm_state_ts=now, vm_cmd=None, current_di_id=None,
                  run_attempts=0, vma_ok_ts=None, expiration_soft=None, expiration_hard=None,
                  db_now=now)  # fmt: skip
    return dataclasses.replace(view, **changes)  # type: ignore[arg-type]


def test_stored_name_problem() -> None:
    assert stored_name_problem(_view(), "10000-x.tar") is None
    # a VM name with a line break (stored before the database refused it) never
    # reaches the backend's configuration file
    bad = _view(name="x\nlxc.hook.pre-start = /bin/sh -c id")
    assert "cannot be written into a configuration file" in str(
        stored_name_problem(bad, "10000-x.tar")
    )
    assert stored_name_problem(_view(name="a\u202eb"), "x.tar") is not None
    assert stored_name_problem(_view(), "../x.tar") is not None
    # the login is the backend's to name a home after (or not): no problem here
    assert stored_name_problem(_view(login="../x"), "x.tar") is None
