"""A tenant administrator stopping every tenant's policies with one bad time zone: a
policy whose ``timezone`` is a path (``../../../etc/passwd``) or a zone nobody knows
would make the leader's pass fail as it computes that policy's schedule — and with
it the idle stops, schedules and warm pools of every other tenant.

The guards: the API refuses a zone that is not a known IANA name (6320); and the
leader skips a row with an unknown zone (written around the API, or a zone a tzdata
update removed) instead of failing its whole pass. Both are reproduced against the
real API and a real leader on a real database."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import Engine, text

from qvd.config import Config
from qvd.db import DatabaseTarget
from qvd.policy.runner import PolicyRunner
from tests.api.conftest import Api, World
from tests.api.conftest import api as api
from tests.api.conftest import api_engine as api_engine
from tests.api.conftest import config as config
from tests.api.conftest import world as world

_BAD_ZONES = ("../../../etc/passwd", "/etc/localtime", "Nowhere/Void", "Europe/../../etc")


def test_a_bad_zone_is_refused_and_a_bad_row_stops_no_other_policy(
    api: Api, world: World, api_engine: Engine, db: DatabaseTarget
) -> None:
    sid = api.login("adminA", "tenantA")
    for zone in _BAD_ZONES:
        r = api.act("policy_create", sid=sid, arguments={
            "name": "evening", "kind": "scheduled_stop", "at_minute": 0, "timezone": zone,
        })  # fmt: skip
        assert r["status"] == 6320, (zone, r)
        assert "not a known time zone" in r["message"]
    with api_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM policies")).scalar_one() == 0

    # tenant B's idle rule, and a row of tenant A with a bad zone written around the API
    root = api.login("root")
    r = api.act("policy_create", sid=root, arguments={
        "tenant_id": world.tenants["B"], "name": "idle", "kind": "idle_stop", "minutes": 5,
    })  # fmt: skip
    assert r["status"] == 0, r
    with api_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO policies (tenant_id, name, kind, at_minute, timezone)"
            " VALUES (:t, 'evening', 'scheduled_stop', 0, '../../../etc/passwd')"
        ), {"t": world.tenants["A"]})  # fmt: skip
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        conn.execute(text(
            "UPDATE vm_runtimes SET vm_state = 'running', host_id = :h, vm_state_ts = :t,"
            " user_state_ts = :t WHERE vm_id IN (:a, :b)"
        ), {"h": world.host, "t": long_ago, "a": world.vms["A"], "b": world.vms["B"]})  # fmt: skip
    config_ = Config()
    runner = PolicyRunner(api_engine, db, lambda: config_, stop=threading.Event())
    try:
        report = runner.step()
        assert report is not None
        assert report.done == 1
    finally:
        runner.leadership.release()
    with api_engine.connect() as conn:
        cmds = dict(conn.execute(text("SELECT vm_id, vm_cmd FROM vm_runtimes")).all())
    assert cmds[world.vms["B"]] == "stop"  # tenant B's rule ran
    assert cmds[world.vms["A"]] is None  # the bad row did nothing
