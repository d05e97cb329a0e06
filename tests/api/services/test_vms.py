"""VM start, stop and disconnect: host assignment with the shared load balancer,
``vm_cmd`` / ``user_cmd`` set, and the NOTIFY that wakes the node arrives; and
``vm_create`` / ``vm_update`` refusing a taken address without telling whose it is."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from qvd.api.actions.core import Ctx
from qvd.api.actions.principal import Principal
from qvd.api.errors import Conflict
from qvd.api.services import vms
from qvd.config import Config
from qvd.db import DatabaseTarget, Listener
from qvd.db.channels import user_cmd_channel, vm_cmd_channel
from qvd.db.models import HostRuntime, Vm, VmRuntime
from tests.api.conftest import Api, World, add_running_host
from tests.api.services.test_properties import _leaks_b, _ok


# ---- VM addresses ------------------------------------------------------------------------
def _vm_args(world: World, label: str, ip: str | None = None, name: str = "new") -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": name,
        "user_id": world.users[label],
        "osf_id": world.osfs[label],
    }
    if ip is not None:
        args["ip"] = ip
    return args


def test_a_taken_address_is_refused_like_any_unusable_one(api: Api, world: World) -> None:
    root = api.login("root")
    # tenant B's VM takes the first address of the range (10.0.0.100/16 by default)
    b_vm = _ok(api.act("vm_create", sid=root, arguments=_vm_args(world, "B", name="bvm")))
    taken = api.act("vm_get_list", sid=root, filters={"id": b_vm["rows"][0]["id"]}, fields=["ip"])
    assert taken["rows"] == [{"ip": "10.0.0.100"}]

    sid = api.login("adminA", "tenantA")
    messages = {}
    for ip in ("10.0.0.100", "10.0.0.99", "192.168.1.1", "10.0.255.255", "10.3.0.11", "::1"):
        r = api.act("vm_create", sid=sid, arguments=_vm_args(world, "A", ip))
        assert r["status"] == 7200, (ip, r)
        assert not _leaks_b(r)
        assert "bvm" not in r["message"]
        messages[ip] = r["message"].replace(f"address {ip} ", "address <ip> ")
    assert len(set(messages.values())) == 1, messages

    r = api.act("vm_create", sid=sid, arguments=_vm_args(world, "A", "not-an-ip"))
    assert r["status"] == 6320
    _ok(api.act("vm_create", sid=sid, arguments=_vm_args(world, "A", "10.0.0.150")))


def test_vm_update_checks_the_address_the_same_way(api: Api, world: World) -> None:
    root = api.login("root")
    _ok(api.act("vm_create", sid=root, arguments=_vm_args(world, "B", "10.0.0.120", "bvm")))
    sid = api.login("adminA", "tenantA")
    mine = {"id": world.vms["A"]}
    r = api.act("vm_update", sid=sid, filters=mine, arguments={"ip": "10.0.0.120"})
    assert r["status"] == 1200
    failure = r["failures"][str(world.vms["A"])]
    assert failure["status"] == 7200
    assert not _leaks_b(r)
    assert "bvm" not in failure["message"]
    # keeping its own address (even one from before the range) is no change
    _ok(api.act("vm_update", sid=sid, filters=mine, arguments={"ip": "10.3.0.10"}))
    _ok(api.act("vm_update", sid=sid, filters=mine, arguments={"ip": "10.0.0.121"}))
    got = api.act("vm_get_list", sid=sid, filters=mine, fields=["ip"])
    assert got["rows"] == [{"ip": "10.0.0.121"}]


def test_an_address_claimed_meanwhile_reads_as_the_same_refusal(
    api: Api, world: World, config: Config, api_engine: Engine
) -> None:
    """Two creates racing for one address: the loser's database refusal is worded like
    the check it passed a moment before."""
    # what the check says of that address, as an administrator reads it
    said = api.act(
        "vm_create", sid=api.login("adminA", "tenantA"), arguments=_vm_args(world, "A", "10.3.0.11")
    )
    assert said["status"] == 7200
    principal = Principal(admin_id=1, admin_name="adminA", tenant_id=world.tenants["A"],
                          tenant_name="tenantA", acls=frozenset())  # fmt: skip
    with Session(api_engine) as s, s.begin():
        ctx = Ctx(session=s, principal=principal, config=config, engine=api_engine)
        s.add(Vm(name="late", user_id=world.users["A"], osf_id=world.osfs["A"], ip="10.3.0.11"))
        with pytest.raises(Conflict) as caught:
            vms._flush(ctx, "10.3.0.11")
        assert caught.value.code == 7200
        assert caught.value.message == said["message"]


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
