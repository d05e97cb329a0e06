"""``qvd_objects_statistics`` beyond QVD's counts: VMs and DIs by state (what a
dashboard needs to follow every state change over one socket), and a superadmin's
tenant filter. Expected values come from the rows each test writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from tests.api.conftest import Api, World


def _stats(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    r = api.act("qvd_objects_statistics", sid=sid, **body)
    assert r["status"] == 0, r
    stats: dict[str, Any] = r["rows"][0]
    return stats


def _sql(engine: Engine, statement: str, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), values)


def test_vms_and_dis_by_state(api: Api, world: World, api_engine: Engine) -> None:
    _sql(api_engine, "UPDATE vm_runtimes SET vm_state = 'running', host_id = :h WHERE vm_id = :vm",
         h=world.host, vm=world.vms["A"])  # fmt: skip
    _sql(api_engine, "UPDATE di_runtimes SET state = 'uploading' WHERE di_id = :di",
         di=world.dis["B"])  # fmt: skip
    root = _stats(api, api.login("root"))
    assert root["vms_by_state"] == {
        "stopped": 1, "starting": 0, "running": 1, "stopping": 0, "zombie": 0, "debugging": 0,
    }  # fmt: skip
    assert root["dis_by_state"] == {"published": 1, "uploading": 1}
    mine = _stats(api, api.login("adminA", "tenantA"))
    assert mine["vms_by_state"]["running"] == 1
    assert mine["vms_by_state"]["stopped"] == 0
    assert mine["dis_by_state"] == {"published": 1}


def test_a_superadmin_narrows_the_counts_to_one_tenant(
    api: Api, world: World, api_engine: Engine
) -> None:
    _sql(api_engine, "UPDATE users SET blocked = true WHERE id = :u", u=world.users["B"])
    sid = api.login("root")
    b = _stats(api, sid, filters={"tenant_id": world.tenants["B"]})
    assert (b["vms_count"], b["users_count"], b["blocked_users_count"]) == (1, 1, 1)
    assert (b["osfs_count"], b["dis_count"]) == (1, 1)
    assert b["vms_by_state"]["stopped"] == 1
    assert b["hosts_count"] == 1  # nodes are global
    a = _stats(api, sid, filters={"tenant_id": world.tenants["A"]})
    assert (a["vms_count"], a["blocked_users_count"]) == (1, 0)
    assert _stats(api, sid)["vms_count"] == 2


def test_other_filters_and_a_tenant_admins_tenant_filter_are_refused(
    api: Api, world: World
) -> None:
    own = api.act(
        "qvd_objects_statistics", sid=api.login("adminA", "tenantA"),
        filters={"tenant_id": world.tenants["B"]},
    )  # fmt: skip
    assert own["status"] == 4220, own
    other = api.act("qvd_objects_statistics", sid=api.login("root"), filters={"name": "x"})
    assert other["status"] == 4220, other
    bad = api.act("qvd_objects_statistics", sid=api.login("root"), filters={"tenant_id": "B"})
    assert bad["status"] == 6310, bad
