"""The tenants pages (server side): superadmins list, create, edit, block and delete
tenants and change their WAT settings; tenant administrators get a clear refusal."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from qvd.db import make_engine
from tests.api.conftest import add_admin
from tests.wat.conftest import Wat


def _ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-id="(\d+)"', html)]


def test_superadmin_lists_every_tenant(wat: Wat) -> None:
    wat.login()
    r = wat.client.get("/tenants")
    assert r.status_code == 200
    assert 'data-object="tenant"' in r.text
    assert sorted(_ids(r.text)) == sorted([*wat.world.tenants.values(), 1])
    assert "tenantA" in r.text
    assert "tenantB" in r.text
    found = wat.client.get("/tenants", params={"q": "tenantB"}).text
    assert _ids(found) == [wat.world.tenants["B"]]


def test_tenant_admin_gets_a_clear_refusal(wat: Wat) -> None:
    wat.login("adminA", "tenantA")
    for path in ("/tenants", "/tenants/new", f"/tenants/{wat.world.tenants['A']}"):
        r = wat.client.get(path)
        assert r.status_code == 403, path
        assert "Only superadministrators manage tenants." in r.text
        assert "tenantB" not in r.text
    assert "/tenants" not in re.findall(r'href="([^"]+)"', wat.client.get("/").text)


def test_tenant_admin_cannot_change_a_tenant_by_posting(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    b = wat.world.tenants["B"]
    r = wat.client.post(f"/tenants/{b}", data={"csrf": csrf, "name": "stolen", "blocked": "1"})
    assert r.status_code == 403
    wat.client.post("/logout", data={"csrf": csrf})
    wat.login()
    page = wat.client.get(f"/tenants/{b}").text
    assert "<h1>tenantB</h1>" in page
    assert "stolen" not in page


def test_create_a_tenant_then_see_its_page(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.post(
        "/tenants/new",
        data={"csrf": csrf, "name": "acme", "language": "es", "block": "25", "description": "d"},
    )
    assert r.status_code == 303, r.text
    match = re.fullmatch(r"/tenants/(\d+)", r.headers["location"])
    assert match
    page = wat.client.get(r.headers["location"])
    assert page.status_code == 200
    assert "<h1>acme</h1>" in page.text
    assert 'id="edit"' in page.text
    assert 'id="wat-settings"' in page.text
    assert f'href="/configs?tenant={match.group(1)}"' in page.text
    counts = dict(re.findall(r'<dd data-count="(\w+)">(\d+)</dd>', page.text))
    assert counts == {"users": "0", "vms": "0", "administrators": "0"}


def test_counts_of_a_tenant_with_objects(wat: Wat) -> None:
    wat.login()
    page = wat.client.get(f"/tenants/{wat.world.tenants['A']}").text
    counts = dict(re.findall(r'<dd data-count="(\w+)">(\d+)</dd>', page))
    assert counts == {"users": "1", "vms": "1", "administrators": "1"}


def test_a_refused_create_keeps_what_was_typed(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.post(
        "/tenants/new",
        data={"csrf": csrf, "name": "tenantA", "language": "en", "block": "10",
              "description": "typed text"},
    )  # fmt: skip
    assert r.status_code == 409
    assert 'class="flash error"' in r.text
    assert "typed text" in r.text
    bad = wat.client.post(
        "/tenants/new", data={"csrf": csrf, "name": "fresh", "language": "en", "block": "0"}
    )
    assert bad.status_code == 400
    assert "block (page size) must be 1..10000" in bad.text
    assert 'value="fresh"' in bad.text


def test_block_edit_and_wat_settings(wat: Wat) -> None:
    csrf = wat.login()
    a = wat.world.tenants["A"]
    r = wat.client.post(
        f"/tenants/{a}",
        data={"csrf": csrf, "name": "tenantA2", "language": "en", "block": "30", "blocked": "1"},
    )
    assert r.status_code == 303, r.text
    listed = wat.client.get("/tenants", params={"q": "tenantA2"}).text
    row = re.search(rf'<tr data-id="{a}">(.*?)</tr>', listed, re.S)
    assert row
    assert "✔" in row.group(1)
    r = wat.client.post(f"/tenants/{a}/settings", data={"csrf": csrf, "language": "es",
                                                        "block": "15"})  # fmt: skip
    assert r.status_code == 303
    page = wat.client.get(f"/tenants/{a}").text
    assert re.search(r'<option value="es" selected>', page)
    assert 'id="w-block" name="block" type="number" value="15"' in page
    bad = wat.client.post(f"/tenants/{a}/settings", data={"csrf": csrf, "block": "-3"})
    assert bad.status_code == 400
    assert "page size" in bad.text


def test_delete_refused_while_it_has_users_then_done(wat: Wat) -> None:
    csrf = wat.login()
    a = wat.world.tenants["A"]
    r = wat.client.post(f"/tenants/{a}/delete", data={"csrf": csrf})
    assert r.status_code == 409
    assert "delete them first" in r.text
    made = wat.client.post("/tenants/new", data={"csrf": csrf, "name": "gone", "block": "10"})
    target = made.headers["location"]
    r = wat.client.post(target + "/delete", data={"csrf": csrf})
    assert r.status_code == 303
    assert wat.client.get(target).status_code == 404


def test_missing_tenant_is_404_with_a_clear_page(wat: Wat) -> None:
    wat.login()
    r = wat.client.get("/tenants/999999")
    assert r.status_code == 404
    assert "There is no tenant with id 999999." in r.text
    assert wat.client.get("/tenants/-1").status_code == 404
    assert wat.client.get("/tenants/0").status_code == 404


def test_changes_need_the_csrf_token(wat: Wat) -> None:
    wat.login()
    r = wat.client.post("/tenants/new", data={"name": "nocsrf"})
    assert r.status_code == 403
    assert "nocsrf" not in wat.client.get("/tenants").text


def test_tenant_page_shows_its_recent_changes(wat: Wat) -> None:
    csrf = wat.login()
    a = wat.world.tenants["A"]
    wat.client.post(f"/tenants/{a}", data={"csrf": csrf, "name": "tenantA", "blocked": "1"})
    page = wat.client.get(f"/tenants/{a}").text
    history = re.search(r'<table class="list" id="tenant-history"[^>]*>(.*?)</table>', page, re.S)
    assert history
    assert "tenant_update" in history.group(1)
    assert re.search(r'<a href="/logs/\d+">', history.group(1))


def test_a_reader_superadmin_sees_no_edit_or_delete(wat: Wat, db: Any) -> None:
    engine = make_engine(db)
    try:
        with Session(engine) as s, s.begin():
            add_admin(s, "reader", 0, role="Tenants Reader")
    finally:
        engine.dispose()
    csrf = wat.login("reader", "*")
    a = wat.world.tenants["A"]
    page = wat.client.get(f"/tenants/{a}")
    assert page.status_code == 200
    assert "<h1>tenantA</h1>" in page.text
    assert 'id="edit"' not in page.text
    assert 'id="delete"' not in page.text
    refused = wat.client.post(f"/tenants/{a}/delete", data={"csrf": csrf})  # the API refuses
    assert refused.status_code == 403
    assert 'class="flash error"' in refused.text


def test_the_header_tenant_choice_does_not_filter_tenants(wat: Wat) -> None:
    csrf = wat.login()
    wat.client.post("/settings/tenant", data={"csrf": csrf, "tenant": str(wat.world.tenants["A"])})
    r = wat.client.get("/tenants")
    assert r.status_code == 200
    assert 'class="flash error"' not in r.text
    assert sorted(_ids(r.text)) == sorted([*wat.world.tenants.values(), 1])
