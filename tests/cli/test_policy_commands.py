"""``qa policy get|new|set|del`` against the real API (in-process)."""

from __future__ import annotations

import json

from tests.api.conftest import World
from tests.cli.conftest import Qa


def test_policy_commands(qa: Qa, world: World) -> None:
    tenant = world.tenants["A"]
    code, out, err = qa(
        "policy new name=morning, kind=scheduled_start, at='\"07:30\"',"
        " weekdays=[mon,tue,wed,thu,fri],"
        f" timezone=Europe/Madrid, tenant_id={tenant}"
    )
    assert code == 0, err
    code, out, err = qa(f"policy new name=idle, kind=idle_stop, minutes=30, tenant_id={tenant}")
    assert code == 0, err
    code, out, err = qa("-f json policy get")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)["rows"]}
    assert rows["morning"]["at_minute"] == 450
    assert rows["morning"]["weekdays"] == 31
    assert rows["morning"]["timezone"] == "Europe/Madrid"
    assert rows["idle"]["minutes"] == 30
    assert qa("policy name=idle set minutes=45")[0] == 0
    assert qa("-f csv policy name=idle get minutes")[1] == "minutes\n45\n"
    code, _out, err = qa(
        "policy new name=bad, kind=scheduled_stop, at_minute=480, timezone=Nowhere/X,"
        f" tenant_id={tenant}"
    )
    assert code == 1
    assert "6320" in err
    assert "time zone" in err
    assert qa("policy name=idle del --force")[0] == 0
    assert qa("policy get")[1].endswith("Total: 1\n")
