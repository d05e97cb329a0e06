"""``policy_get_list`` / ``_create`` / ``_update`` / ``_delete``: kind-specific checks,
time zones, weekdays, names, ACLs and the tenant scope, on a real database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from qvd.db.models import Policy
from tests.api.conftest import Api, World
from tests.api.services.test_properties import _admin, _ok


def _new(api: Api, sid: str, **args: Any) -> dict[str, Any]:
    return api.act("policy_create", sid=sid, arguments=args)


def test_create_list_update_delete(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")
    idle = _ok(_new(api, sid, name="idle 30", kind="idle_stop", minutes=30))["rows"][0]["id"]
    morning = _ok(_new(api, sid, name="morning", kind="scheduled_start", at="07:45",
                       weekdays="mon,tue,wed,thu,fri", timezone="Europe/Madrid",
                       osf_id=world.osfs["A"]))["rows"][0]["id"]  # fmt: skip
    pool = _ok(_new(api, sid, name="pool", kind="warm_pool", size=3, minutes=20))["rows"][0]["id"]
    rows = _ok(api.act("policy_get_list", sid=sid, order_by=["id"]))["rows"]
    assert [r["id"] for r in rows] == [idle, morning, pool]
    by_id = {r["id"]: r for r in rows}
    assert by_id[morning]["at_minute"] == 7 * 60 + 45
    assert by_id[morning]["weekdays"] == 31
    assert by_id[morning]["timezone"] == "Europe/Madrid"
    assert by_id[morning]["osf_name"] == "osfA"
    assert by_id[idle]["minutes"] == 30
    assert by_id[idle]["enabled"] == 1
    assert "tenant_id" not in by_id[idle]  # a tenant admin sees one tenant

    _ok(api.act("policy_update", sid=sid, filters={"id": idle},
                arguments={"minutes": 45, "enabled": False}))  # fmt: skip
    with Session(api_engine) as s:
        row = s.get_one(Policy, idle)
        assert (row.minutes, row.enabled) == (45, False)
    # a changed schedule starts now: the occurrences before the change are not run
    _ok(api.act("policy_update", sid=sid, filters={"id": morning}, arguments={"at": "08:00"}))
    with Session(api_engine) as s:
        assert s.get_one(Policy, morning).last_run_at is not None

    _ok(api.act("policy_delete", sid=sid, filters={"id": pool}))
    with Session(api_engine) as s:
        assert s.scalar(select(Policy.id).where(Policy.id == pool)) is None


def test_kind_specific_checks(api: Api, world: World) -> None:
    sid = api.login("adminA", "tenantA")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"name": "x", "kind": "idle_stop"}, 6240, "needs minutes"),
        ({"name": "x", "kind": "idle_stop", "minutes": 0}, 6320, "at least 1"),
        ({"name": "x", "kind": "idle_stop", "minutes": 5, "size": 2}, 6320, "takes no size"),
        ({"name": "x", "kind": "scheduled_stop"}, 6240, "needs at_minute"),
        ({"name": "x", "kind": "scheduled_stop", "at": "25:00"}, 6320, "00:00-23:59"),
        ({"name": "x", "kind": "scheduled_stop", "at": "8h"}, 6320, "HH:MM"),
        ({"name": "x", "kind": "scheduled_stop", "at_minute": 1440}, 6320, "0-1439"),
        ({"name": "x", "kind": "scheduled_stop", "at": "08:00", "timezone": "Mars/Base"},
         6320, "not a known time zone"),
        ({"name": "x", "kind": "scheduled_stop", "at": "08:00", "timezone": "../../etc/passwd"},
         6320, "not a known time zone"),
        ({"name": "x", "kind": "scheduled_stop", "at": "08:00", "weekdays": "someday"},
         6320, "weekdays"),
        ({"name": "x", "kind": "scheduled_stop", "at": "08:00", "weekdays": 128}, 6320, "0-127"),
        ({"name": "x", "kind": "warm_pool", "minutes": 10}, 6240, "needs size"),
        ({"name": "x", "kind": "max_session", "minutes": 10, "weekdays": 1}, 6320, "weekdays"),
        ({"name": "x", "kind": "reboot", "minutes": 10}, 6320, "kind must be one of"),
        ({"name": "bad\u202ename", "kind": "idle_stop", "minutes": 10}, 6320, "policy name"),
        ({"name": "-x", "kind": "idle_stop", "minutes": 10}, 6320, "policy name"),
        ({"kind": "idle_stop", "minutes": 10}, 6240, "'name' is required"),
        ({"name": "x", "kind": "idle_stop", "minutes": 10, "colour": "red"}, 6230, "colour"),
    ]  # fmt: skip
    for args, status, words in cases:
        r = _new(api, sid, **args)
        assert r["status"] == status, (args, r)
        assert words in r["message"], (args, r["message"])
    # an update is checked against the whole row
    pid = _ok(_new(api, sid, name="ok", kind="idle_stop", minutes=5))["rows"][0]["id"]
    r = api.act("policy_update", sid=sid, filters={"id": pid}, arguments={"kind": "warm_pool"})
    assert r["status"] == 1200 or r["status"] == 6240, r
    _ok(api.act("policy_update", sid=sid, filters={"id": pid},
                arguments={"kind": "warm_pool", "size": 2}))  # fmt: skip
    dup = _new(api, sid, name="ok", kind="idle_stop", minutes=5)
    assert dup["status"] == 7200, dup


def test_acls(api: Api, world: World, api_engine: Engine) -> None:
    _admin(api_engine, "reader", world.tenants["A"], "Operator L1")
    _admin(api_engine, "vmonly", world.tenants["A"], "VMs Manager")
    _admin(api_engine, "l3", world.tenants["A"], "Operator L3")
    reader, vmonly, l3 = (api.login(n, "tenantA") for n in ("reader", "vmonly", "l3"))
    assert _new(api, reader, name="r", kind="idle_stop", minutes=5)["status"] == 4210
    assert api.act("policy_get_list", sid=vmonly)["status"] == 4210
    pid = _ok(_new(api, l3, name="l3", kind="idle_stop", minutes=5))["rows"][0]["id"]
    assert [r["id"] for r in _ok(api.act("policy_get_list", sid=reader))["rows"]] == [pid]


def test_a_superadmin_names_the_tenant(api: Api, world: World) -> None:
    root = api.login("root")
    assert _new(api, root, name="p", kind="idle_stop", minutes=5)["status"] == 6240
    pid = _ok(_new(api, root, name="p", kind="idle_stop", minutes=5,
                   tenant_id=world.tenants["B"]))["rows"][0]["id"]  # fmt: skip
    rows = _ok(api.act("policy_get_list", sid=root, filters={"id": pid}))["rows"]
    assert rows[0]["tenant_name"] == "tenantB"
