"""``session_get_list``, ``GET /api/v1/session_history(.csv)`` and ``qa session get``
on the real API app over a throwaway database: filters, ordering, paging, the ACL,
tenant scoping, the CSV stream."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from tests.api.conftest import Api, World, add_admin
from tests.cli.conftest import Qa, qa

__all__ = ["qa"]

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)


def add_row(engine: Engine, **values: Any) -> int:
    row: dict[str, Any] = {
        "kind": "connect", "result": "ok", "login": "usera", "started_at": T0,
        "tenant_id": None, "user_id": None, "vm_id": None, "vm_name": None,
        "host_id": None, "host_name": "node1", "client_address": "192.0.2.7",
        "ended_at": None, "end_reason": None, "bytes_in": None, "bytes_out": None,
        "transport": "nx",
    }  # fmt: skip
    row.update(values)
    cols = ", ".join(row)
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    f"INSERT INTO session_history ({cols}) VALUES "
                    f"({', '.join(':' + c for c in row)}) RETURNING id"
                ),
                row,
            ).scalar_one()
        )


@pytest.fixture
def history(api_engine: Engine, world: World) -> dict[str, int]:
    """A: a login, a failed login, two connects (one ended), a takeover; B: a connect;
    and a failed login that named no tenant."""
    a, b = world.tenants["A"], world.tenants["B"]
    ua, ub = world.users["A"], world.users["B"]
    ids = {
        "a_login": add_row(api_engine, kind="login", tenant_id=a, user_id=ua,
                           started_at=T0, ended_at=T0),
        "a_failed": add_row(api_engine, kind="login", result="unauthorized", tenant_id=a,
                            user_id=ua, started_at=T0 + dt.timedelta(minutes=1),
                            ended_at=T0 + dt.timedelta(minutes=1)),
        "a_connect": add_row(api_engine, tenant_id=a, user_id=ua, vm_id=world.vms["A"],
                             vm_name="vmA", started_at=T0 + dt.timedelta(minutes=2),
                             ended_at=T0 + dt.timedelta(minutes=32), end_reason="taken_over",
                             bytes_in=100, bytes_out=2000),
        "a_takeover": add_row(api_engine, kind="takeover", tenant_id=a, user_id=ua,
                              vm_id=world.vms["A"], vm_name="vmA",
                              started_at=T0 + dt.timedelta(minutes=32), transport="vnc"),
        "b_connect": add_row(api_engine, tenant_id=b, user_id=ub, login="userb",
                             vm_id=world.vms["B"], vm_name="vmB",
                             started_at=T0 + dt.timedelta(days=1)),
        "nobody": add_row(api_engine, kind="login", result="unauthorized", login="ghost",
                          started_at=T0 + dt.timedelta(days=2), ended_at=T0),
    }  # fmt: skip
    return ids


def listed(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    r = api.act("session_get_list", sid=sid, **body)
    assert r["status"] == 0, r
    return r


def test_filters_order_and_paging(api: Api, history: dict[str, int], world: World) -> None:
    root = api.login("root")
    everything = listed(api, root, order_by=["id"])
    assert [r["id"] for r in everything["rows"]] == sorted(history.values())
    assert everything["total"] == len(history)

    logins = listed(api, root, filters={"kind": "login", "result": "ok"})
    assert [r["id"] for r in logins["rows"]] == [history["a_login"]]
    by_vm = listed(api, root, filters={"vm_id": world.vms["A"]}, order_by=["started_at"])
    assert [r["id"] for r in by_vm["rows"]] == [history["a_connect"], history["a_takeover"]]
    by_login = listed(api, root, filters={"login": {"~": "user%"}, "kind": ["connect"]})
    assert {r["id"] for r in by_login["rows"]} == {history["a_connect"], history["b_connect"]}
    window = {"started_at": {">=": T0.isoformat(), "<": (T0 + dt.timedelta(hours=1)).isoformat()}}
    in_hour = listed(api, root, filters=window)
    assert in_hour["total"] == 4
    open_ones = listed(api, root, filters={"open": True}, order_by=["id"])
    assert [r["id"] for r in open_ones["rows"]] == [history["a_takeover"], history["b_connect"]]

    (connect,) = listed(api, root, filters={"id": history["a_connect"]})["rows"]
    assert connect["duration"] == 30 * 60
    assert (connect["end_reason"], connect["bytes_in"], connect["bytes_out"]) == (
        "taken_over", 100, 2000,
    )  # fmt: skip
    assert connect["tenant_name"] == "tenantA"

    newest_first = {"field": ["started_at"], "order": "-desc"}
    second_page = listed(api, root, order_by=newest_first, block=2, offset=2)
    assert second_page["total"] == len(history)
    assert [r["id"] for r in second_page["rows"]] == [history["a_takeover"], history["a_connect"]]


def test_tenant_admins_see_their_tenant_only(
    api: Api, history: dict[str, int], world: World
) -> None:
    sid = api.login("adminA", "tenantA")
    mine = listed(api, sid, order_by=["id"])
    assert [r["id"] for r in mine["rows"]] == [
        history[k] for k in ("a_login", "a_failed", "a_connect", "a_takeover")
    ]
    assert all("tenant_id" not in r for r in mine["rows"])
    theirs = listed(api, sid, filters={"vm_id": world.vms["B"]})
    assert theirs["rows"] == []
    assert theirs["total"] == 0
    refused = api.act("session_get_list", sid=sid, filters={"tenant_id": world.tenants["B"]})
    assert refused["status"] != 0


def test_the_acl_session_see_is_needed(api: Api, api_engine: Engine, world: World) -> None:
    with Session(api_engine) as s, s.begin():
        add_admin(s, "vmreader", world.tenants["A"], role="VMs Reader")
        add_admin(s, "logreader", world.tenants["A"], role="Logs Manager")
    refused = api.act("session_get_list", sid=api.login("vmreader", "tenantA"))
    assert refused["status"] != 0
    assert "session.see" in refused["message"]
    assert api.act("session_get_list", sid=api.login("logreader", "tenantA"))["status"] == 0


def read_csv(body: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body)))


def test_rest_page_and_csv(api: Api, history: dict[str, int]) -> None:
    headers = api.headers("root")
    page = api.client.get("/api/v1/session_history", headers=headers, params={"limit": 2})
    assert page.status_code == 200, page.text
    assert page.json()["total"] == len(history)
    assert [r["id"] for r in page.json()["rows"]] == [history["nobody"], history["b_connect"]]

    params = {"filters": json.dumps({"kind": ["connect", "takeover"]}),
              "fields": "id,login,vm_name,started_at,duration,end_reason"}  # fmt: skip
    exported = api.client.get("/api/v1/session_history.csv", headers=headers, params=params)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    table = read_csv(exported.text)
    assert table[0] == ["id", "login", "vm_name", "started_at", "duration", "end_reason"]
    assert [int(r[0]) for r in table[1:]] == [
        history["b_connect"], history["a_takeover"], history["a_connect"]
    ]  # fmt: skip
    connect = table[3]
    assert connect[1:] == ["usera", "vmA", connect[3], "1800", "taken_over"]
    assert dt.datetime.fromisoformat(connect[3]) == T0 + dt.timedelta(minutes=2)


def test_csv_pages_through_every_row(
    api: Api, api_engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qvd.api.faces.routes import session_history as route

    monkeypatch.setattr(route, "CSV_CHUNK", 3)
    made = [add_row(api_engine, tenant_id=world.tenants["A"], login=f"u{i}") for i in range(8)]
    exported = api.client.get(
        "/api/v1/session_history.csv", headers=api.headers("root"), params={"fields": "id"}
    )
    assert exported.status_code == 200
    assert sorted(int(r[0]) for r in read_csv(exported.text)[1:]) == made


def test_csv_refusals_are_statuses_with_reasons(api: Api, history: dict[str, int]) -> None:
    assert api.client.get("/api/v1/session_history.csv").status_code == 401
    bad = api.client.get(
        "/api/v1/session_history.csv",
        headers=api.headers("root"),
        params={"filters": json.dumps({"no_such_field": 1})},
    )
    assert bad.status_code == 400
    assert "no_such_field" in bad.text


def test_qa_session_get(qa: Qa, api_engine: Engine, world: World) -> None:
    add_row(api_engine, tenant_id=world.tenants["A"], user_id=world.users["A"], vm_name="vmA",
            end_reason="disconnect", ended_at=T0 + dt.timedelta(seconds=90))  # fmt: skip
    add_row(api_engine, tenant_id=world.tenants["B"], login="userb", vm_name="vmB")
    code, out, err = qa("session user=usera get")
    assert code == 0, err
    assert "vmA" in out
    assert "vmB" not in out
    assert "Total: 1" in out
    code, out, err = qa("session vm=vmB get login, vm_name, kind --csv")
    assert code == 0, err
    assert read_csv(out) == [["login", "vm_name", "kind"], ["userb", "vmB", "connect"]]
    code, out, err = qa("session get", login="adminA", tenant="tenantA")
    assert code == 0, err
    assert "vmA" in out
    assert "vmB" not in out
