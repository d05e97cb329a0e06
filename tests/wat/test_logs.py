"""The audit log pages (server side): newest first, filters, an entry's arguments with
secrets redacted, tenant scope."""

from __future__ import annotations

import re

from tests.wat.conftest import Wat

SECRET = "pw-that-must-not-show-1"


def _ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-id="(\d+)"', html)]


def _cells(html: str, field: str) -> list[str]:
    found = re.findall(rf'<td data-field="{field}"[^>]*>(.*?)</td>', html, re.S)
    return [re.sub(r"<[^>]+>", "", c).strip() for c in found]


def _act(wat: Wat, csrf: str, action: str, **body: object) -> dict[str, object]:
    r = wat.client.post("/api", json={"action": action, **body}, headers={"X-CSRF-Token": csrf})
    result: dict[str, object] = r.json()
    return result


def test_newest_first_with_the_columns(wat: Wat) -> None:
    csrf = wat.login()
    wat.client.post("/tenants/new", data={"csrf": csrf, "name": "logged1", "block": "10"})
    wat.client.post("/tenants/new", data={"csrf": csrf, "name": "tenantA", "block": "10"})
    r = wat.client.get("/logs")
    assert r.status_code == 200
    assert 'data-object="log"' in r.text
    ids = _ids(r.text)
    assert ids == sorted(ids, reverse=True)
    first = re.search(rf'<tr data-id="{ids[0]}">(.*?)</tr>', r.text, re.S)
    assert first
    row = dict(re.findall(r'<td data-field="(\w+)"[^>]*>\s*(.*?)\s*</td>', first.group(1), re.S))
    assert row["action"] == "tenant_create"
    assert row["status"] == "7200"
    assert row["source"] == "WAT"
    assert row["admin_name"] == "root"
    assert row["ip"]
    assert "logged1" in _cells(r.text, "object_name")


def test_filters_by_status_action_object_admin(wat: Wat) -> None:
    csrf = wat.login()
    wat.client.post("/tenants/new", data={"csrf": csrf, "name": "tenantA", "block": "10"})
    wat.client.post("/tenants/new", data={"csrf": csrf, "name": "okone", "block": "10"})
    failed = wat.client.get("/logs", params={"status": "failed"}).text
    assert _cells(failed, "status")
    assert all(s != "ok" for s in _cells(failed, "status"))
    ok = wat.client.get("/logs", params={"status": "ok", "object": "tenant",
                                         "action": "create"}).text  # fmt: skip
    assert _cells(ok, "object_name") == ["okone"]
    assert '<option value="tenant" selected>' in ok
    by_admin = wat.client.get("/logs", params={"admin": "nobody"}).text
    assert "No rows match." in by_admin
    found = wat.client.get("/logs", params={"q": "okone"}).text
    assert _cells(found, "object_name") == ["okone"]
    code = wat.client.get("/logs", params={"status": "7200"}).text
    assert set(_cells(code, "status")) == {"7200"}


def test_entry_page_shows_redacted_arguments(wat: Wat) -> None:
    csrf = wat.login()
    answer = _act(wat, csrf, "user_create", arguments={
        "name": "logme", "password": SECRET, "tenant_id": wat.world.tenants["A"]})  # fmt: skip
    assert answer["status"] == 0, answer
    listed = wat.client.get("/logs", params={"q": "logme"}).text
    (entry,) = _ids(listed)
    assert re.search(r'<a href="/users/\d+">logme</a>', listed)
    page = wat.client.get(f"/logs/{entry}")
    assert page.status_code == 200
    assert "<h1>user_create · logme</h1>" in page.text
    arguments = re.search(r'<pre class="arguments" id="log-arguments">(.*?)</pre>', page.text,
                          re.S)  # fmt: skip
    assert arguments
    assert "logme" in arguments.group(1)
    assert SECRET not in page.text
    assert SECRET not in listed


def test_missing_entry_is_404(wat: Wat) -> None:
    wat.login()
    r = wat.client.get("/logs/987654321")
    assert r.status_code == 404
    assert "There is no log entry with id 987654321." in r.text


def test_tenant_admin_sees_only_their_tenants_entries(wat: Wat) -> None:
    csrf = wat.login()
    _act(wat, csrf, "user_update", filters={"id": wat.world.users["B"]},
         arguments={"description": "by root in B"})  # fmt: skip
    root_entries = _ids(wat.client.get("/logs").text)
    wat.client.post("/logout", data={"csrf": csrf})
    csrf = wat.login("adminA", "tenantA")
    _act(wat, csrf, "user_update", filters={"id": wat.world.users["A"]},
         arguments={"description": "by adminA"})  # fmt: skip
    page = wat.client.get("/logs").text
    mine = _ids(page)
    assert mine
    assert set(_cells(page, "admin_name")) <= {"adminA"}
    assert "userb" not in page
    for entry in root_entries:
        assert wat.client.get(f"/logs/{entry}").status_code == 404


def test_the_tenants_area_in_spanish(wat: Wat) -> None:
    csrf = wat.login()
    wat.client.post("/settings/language", data={"csrf": csrf, "language": "es", "next": "/"})
    expected = {
        f"/tenants/{wat.world.tenants['A']}": "Preferencias del WAT",
        "/tenants/new": "Nuevo tenant",
        "/configs": "Valor en vigor",
        "/configs/l7r.port": "Valor en la base de datos",
        "/logs": "Tipo de acción",
    }
    for path, text in expected.items():
        r = wat.client.get(path)
        assert r.status_code == 200, path
        assert text in r.text, path
