"""VM start, stop and disconnect: host assignment with the shared load balancer,
``vm_cmd`` / ``user_cmd`` set, and the NOTIFY that wakes the node arrives."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from qvd.db import DatabaseTarget, Listener
from qvd.db.channels import user_cmd_channel, vm_cmd_channel
from qvd.db.models import HostRuntime, VmRuntime
from tests.api.conftest import Api, World, add_running_host


def _runtime(engine: Engine, vm_id: int) -> VmRuntime:
    with Session(engine) as s:
        return s.get_one(VmRuntime, vm_id)


def test_start_assigns_a_host_and_notifies_it(
    api: Api, world: World, api_engine: Engine, db: DatabaseTarget
) -> None:
    with Listener(db, [vm_cmd_channel(world.host)]) as listener:
        r = api.act("vm_start", sid=api.login("adminA", "tenantA"), filters={"id": world.vms["A"]})
        assert r["status"] == 0, r
        notes = listener.wait(5, max_count=1)
    assert notes
    assert notes[0].payload == {"vm_id": world.vms["A"], "cmd": "start"}
    rt = _runtime(api_engine, world.vms["A"])
    assert (rt.vm_cmd, rt.host_id) == ("start", world.host)


def test_start_twice_is_5130_and_stop_cancels_a_pending_start(
    api: Api, world: World, api_engine: Engine
) -> None:
    sid = api.login("root")
    api.act("vm_start", sid=sid, filters={"id": world.vms["A"]})
    r = api.act("vm_start", sid=sid, filters={"id": world.vms["A"]})
    assert r["failures"][str(world.vms["A"])]["status"] == 5130
    assert api.act("vm_stop", sid=sid, filters={"id": world.vms["A"]})["status"] == 0
    rt = _runtime(api_engine, world.vms["A"])
    assert (rt.vm_cmd, rt.host_id) == (None, None)


def test_stop_of_a_running_vm_notifies_its_host(
    api: Api, world: World, api_engine: Engine, db: DatabaseTarget
) -> None:
    with Session(api_engine) as s, s.begin():
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == world.vms["A"])
            .values(vm_state="running", host_id=world.host)
        )
    with Listener(db, [vm_cmd_channel(world.host)]) as listener:
        assert (
            api.act("vm_stop", sid=api.login("root"), filters={"id": world.vms["A"]})["status"] == 0
        )
        notes = listener.wait(5, max_count=1)
    assert notes[0].payload == {"vm_id": world.vms["A"], "cmd": "stop"}
    r = api.act("vm_delete", sid=api.login("root"), filters={"id": world.vms["A"]})
    assert r["failures"][str(world.vms["A"])]["status"] == 7310


def test_stop_of_a_stopped_vm_is_5120(api: Api, world: World) -> None:
    r = api.act("vm_stop", sid=api.login("root"), filters={"id": world.vms["A"]})
    assert r["failures"][str(world.vms["A"])]["status"] == 5120


def test_disconnect_sets_abort_and_notifies_the_l7r_host(
    api: Api, world: World, api_engine: Engine, db: DatabaseTarget
) -> None:
    sid = api.login("root")
    r = api.act("vm_user_disconnect", sid=sid, filters={"id": world.vms["A"]})
    assert r["failures"][str(world.vms["A"])]["status"] == 5110
    with Session(api_engine) as s, s.begin():
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == world.vms["A"])
            .values(
                vm_state="running",
                host_id=world.host,
                user_state="connected",
                l7r_host_id=world.host,
            )
        )
    with Listener(db, [user_cmd_channel(world.host)]) as listener:
        assert api.act("vm_user_disconnect", sid=sid, filters={"id": world.vms["A"]})["status"] == 0
        notes = listener.wait(5, max_count=1)
    assert notes[0].payload == {"vm_id": world.vms["A"], "cmd": "abort"}


def test_no_host_is_5140_with_the_reason(api: Api, world: World, api_engine: Engine) -> None:
    with Session(api_engine) as s, s.begin():
        s.execute(update(HostRuntime).values(blocked=True))
    r = api.act("vm_start", sid=api.login("root"), filters={"id": world.vms["A"]})
    failure = r["failures"][str(world.vms["A"])]
    assert failure["status"] == 5140
    assert "no backend host is running" in failure["message"]
    with Session(api_engine) as s, s.begin():
        s.execute(
            update(HostRuntime).values(
                blocked=False, ok_ts=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
            )
        )
    r = api.act("vm_start", sid=api.login("root"), filters={"id": world.vms["A"]})
    assert r["failures"][str(world.vms["A"])]["status"] == 5140


def test_start_prefers_the_host_with_room(api: Api, world: World, api_engine: Engine) -> None:
    with Session(api_engine) as s, s.begin():
        big = add_running_host(s, "bignode", free_ram=64000)
        s.execute(
            update(HostRuntime).where(HostRuntime.host_id == world.host).values(free_ram_mb=100)
        )  # less than the OSF needs
    api.act("vm_start", sid=api.login("root"), filters={"id": world.vms["A"]})
    assert _runtime(api_engine, world.vms["A"]).host_id == big


def test_host_stop_vms_and_block(api: Api, world: World, api_engine: Engine) -> None:
    with Session(api_engine) as s, s.begin():
        s.execute(update(VmRuntime).values(vm_state="running", host_id=world.host))
    sid = api.login("root")
    assert api.act("host_stop_vms", sid=sid, filters={"id": world.host})["status"] == 0
    with Session(api_engine) as s:
        assert set(s.scalars(select(VmRuntime.vm_cmd))) == {"stop"}
    r = api.act("host_delete", sid=sid, filters={"id": world.host})
    assert r["failures"][str(world.host)]["status"] == 7321
    assert (
        api.act("host_update", sid=sid, filters={"id": world.host}, arguments={"blocked": True})[
            "status"
        ]
        == 0
    )
    r = api.act("host_get_list", sid=sid, fields=["blocked", "state"])
    assert r["rows"] == [{"blocked": True, "state": "running"}]


def test_create_checks_tenants_and_delete(api: Api, world: World) -> None:
    sid = api.login("root")
    r = api.act(
        "vm_create",
        sid=sid,
        arguments={"name": "mixed", "user_id": world.users["A"], "osf_id": world.osfs["B"]},
    )
    assert r["status"] == 7300
    r = api.act(
        "vm_create",
        sid=sid,
        arguments={
            "name": "ok",
            "user_id": world.users["A"],
            "osf_id": world.osfs["A"],
            "ip": "10.3.0.10",
        },
    )
    assert r["status"] == 7200  # the address is taken
    r = api.act(
        "vm_create",
        sid=sid,
        arguments={
            "name": "ok",
            "user_id": world.users["A"],
            "osf_id": world.osfs["A"],
            "di_tag": "head",
        },
    )
    assert r["status"] == 0
    assert api.act("vm_delete", sid=sid, filters={"name": "ok"})["status"] == 0
