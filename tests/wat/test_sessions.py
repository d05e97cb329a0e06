"""The WAT's session history page (server side): newest first, a column filter, the
menu entry, tenant scope, the CSV export of the list engine."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.api.test_sessions_history import T0, add_row
from tests.wat.conftest import Wat, open_engine, serve_wat


@pytest.fixture
def wat_db(db: Any, tmp_path: Path) -> Iterator[tuple[Wat, Engine]]:
    with open_engine(db) as engine, serve_wat(engine, tmp_path) as client:
        yield client, engine


def _ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-id="(\d+)"', html)]


def _seed(wat: Wat, engine: Engine) -> dict[str, int]:
    a, b = wat.world.tenants["A"], wat.world.tenants["B"]
    return {
        "a_login": add_row(engine, kind="login", tenant_id=a, started_at=T0, ended_at=T0),
        "a_connect": add_row(engine, tenant_id=a, vm_name="vmA", login="usera",
                             started_at=T0 + dt.timedelta(minutes=5),
                             ended_at=T0 + dt.timedelta(minutes=65), end_reason="disconnect"),
        "b_connect": add_row(engine, tenant_id=b, vm_name="vmB", login="userb",
                             started_at=T0 + dt.timedelta(minutes=10)),
    }  # fmt: skip


def test_newest_first_filtered_and_in_the_menu(wat_db: tuple[Wat, Engine]) -> None:
    wat, engine = wat_db
    ids = _seed(wat, engine)
    wat.login()
    page = wat.client.get("/sessions")
    assert page.status_code == 200, page.text
    assert 'data-object="session"' in page.text
    assert _ids(page.text) == [ids["b_connect"], ids["a_connect"], ids["a_login"]]
    assert 'href="/sessions"' in wat.client.get("/").text
    row = re.search(rf'<tr data-id="{ids["a_connect"]}">(.*?)</tr>', page.text, re.S)
    assert row
    cells = dict(re.findall(r'<td data-field="(\w+)"[^>]*>\s*(.*?)\s*</td>', row.group(1), re.S))
    assert cells["vm_name"] == "vmA"
    assert cells["duration"] == "3600"
    logins = wat.client.get("/sessions", params={"f.kind": "login"})
    assert logins.status_code == 200
    assert _ids(logins.text) == [ids["a_login"]]


def test_a_tenant_admin_sees_their_tenant_only(wat_db: tuple[Wat, Engine]) -> None:
    wat, engine = wat_db
    ids = _seed(wat, engine)
    wat.login("adminA", "tenantA")
    page = wat.client.get("/sessions")
    assert page.status_code == 200
    assert _ids(page.text) == [ids["a_connect"], ids["a_login"]]
    exported = wat.client.get("/sessions.csv")
    assert exported.status_code == 200
    assert "vmA" in exported.text
    assert "vmB" not in exported.text
    assert "userb" not in exported.text
