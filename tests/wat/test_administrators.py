"""The administrators pages, server side: create one, give it roles and see its
effective ACLs, edit it without the password ever coming back, deleting oneself refused
with the API's reason, another tenant's administrator not there (404)."""

from __future__ import annotations

import re

from tests.wat.conftest import Wat, created_id, option_value


def _create_admin(wat: Wat, csrf: str, name: str, tenant: int) -> int:
    r = wat.client.post(
        "/administrators/new",
        data={"csrf": csrf, "name": name, "password": "a-secret-pw-1", "tenant_id": str(tenant),
              "language": "es"},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    return created_id(r.headers["location"], "/administrators", done="")


def _acls(html: str) -> set[str]:
    part = html[html.index('id="effective"') :]
    part = part[: part.index("</section>")]
    return set(re.findall(r'<li data-acl="([^"]+)"', part))


def test_create_give_roles_and_see_the_effective_acls(wat: Wat) -> None:
    csrf = wat.login()
    admin = _create_admin(wat, csrf, "helpdesk", wat.world.tenants["A"])
    page = wat.client.get(f"/administrators/{admin}").text
    assert "<h1>helpdesk</h1>" in page
    assert "tenantA" in page
    assert _acls(page) == set()
    assert "a-secret-pw-1" not in page

    reader = option_value(page, "Users Reader")
    r = wat.client.post(
        f"/administrators/{admin}/roles", data={"csrf": csrf, "role": str(reader), "how": "assign"}
    )
    assert r.status_code == 303
    page = wat.client.get(f"/administrators/{admin}").text
    roles = page[page.index('id="roles"') :]
    assert "Users Reader" in roles[: roles.index("</ul>")]
    acls = _acls(page)
    assert "user.see-main." in acls
    assert not any(a.startswith("vm.") for a in acls)
    assert '<details data-object="user">' in page
    assert "through Users Reader" in page
    summary = re.search(r'<li data-object="user">.*?</span> (\d+) of (\d+)</li>', page)
    assert summary, "no per-object summary"
    assert int(summary.group(1)) == sum(1 for a in acls if a.startswith("user."))
    assert '<li data-object="vm">' in page  # 0 of N shown too

    r = wat.client.post(
        f"/administrators/{admin}/roles",
        data={"csrf": csrf, "role": str(reader), "how": "unassign"},
    )
    assert r.status_code == 303
    assert _acls(wat.client.get(f"/administrators/{admin}").text) == set()

    listing = wat.client.get("/administrators?q=helpdesk").text
    assert 'data-object="administrator"' in listing
    assert "helpdesk" in listing


def test_edit_changes_what_differs_and_never_shows_the_password(wat: Wat) -> None:
    csrf = wat.login()
    admin = _create_admin(wat, csrf, "editme", wat.world.tenants["B"])
    r = wat.client.post(
        f"/administrators/{admin}",
        data={"csrf": csrf, "name": "edited", "password": "", "language": "en", "block": "25",
              "description": "night shift"},
    )  # fmt: skip
    assert r.status_code == 303
    page = wat.client.get(f"/administrators/{admin}").text
    assert "<h1>edited</h1>" in page
    assert 'value="25"' in page
    assert "night shift" in page
    r = wat.client.post(
        f"/administrators/{admin}",
        data={"csrf": csrf, "name": "edited", "password": "another-pw-2", "language": "en",
              "block": "0", "description": "night shift"},
    )  # fmt: skip
    assert r.status_code == 400
    assert "block (page size) must be 1..10000" in r.text
    assert "another-pw-2" not in r.text
    assert 'value="0"' in r.text  # the typed page size is kept


def test_deleting_oneself_is_refused_with_the_apis_reason(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    me = wat.world.admins["A"]
    page = wat.client.get(f"/administrators/{me}").text
    assert 'id="oneself"' in page
    r = wat.client.post(f"/administrators/{me}/delete", data={"csrf": csrf})
    assert r.status_code == 409
    assert "an administrator cannot delete itself" in r.text
    assert "5200" in r.text
    assert "<h1>adminA</h1>" in r.text
    assert wat.client.get(f"/administrators/{me}").status_code == 200


def test_a_tenant_admin_cannot_reach_another_tenants_admin(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    other = wat.world.admins["B"]
    r = wat.client.get(f"/administrators/{other}")
    assert r.status_code == 404
    assert 'id="missing"' in r.text
    assert "adminB" not in r.text
    r = wat.client.post(f"/administrators/{other}/delete", data={"csrf": csrf})
    assert r.status_code == 404
    r = wat.client.post(f"/administrators/{other}", data={"csrf": csrf, "name": "pwned"})
    assert r.status_code == 404
    listing = wat.client.get("/administrators").text
    assert "adminA" in listing
    assert "adminB" not in listing
    assert 'data-field="tenant_name"' not in listing  # superadmin-only column
    wat.login()
    assert "<h1>adminB</h1>" in wat.client.get(f"/administrators/{other}").text


def test_new_admin_refused_keeps_the_name_not_the_password(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    r = wat.client.post(
        "/administrators/new",
        data={"csrf": csrf, "name": "adminA", "password": "typed-secret-9", "language": "en"},
    )
    assert r.status_code == 409
    assert 'id="create"' in r.text
    assert 'value="adminA"' in r.text
    assert "typed-secret-9" not in r.text
    assert 'name="tenant_id"' not in r.text  # only superadmins choose a tenant


def test_changing_ones_own_password_needs_the_current_one(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    me = wat.world.admins["A"]
    form = {"csrf": csrf, "name": "adminA", "language": "auto", "block": "10"}
    r = wat.client.post(f"/administrators/{me}", data={**form, "password": "brand-new-pw-1"})
    assert r.status_code == 400
    assert "current_password" in r.text
    assert "brand-new-pw-1" not in r.text
    r = wat.client.post(
        f"/administrators/{me}",
        data={**form, "password": "brand-new-pw-1", "current_password": "pw-for-tests"},
    )
    assert r.status_code == 303
    assert wat.client.get(f"/administrators/{me}").status_code == 200  # this session lives on
    wat.client.post("/logout", data={"csrf": csrf})
    wat.login("adminA", "tenantA", password="brand-new-pw-1")


def test_mass_delete_asks_first_and_refuses_oneself(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    a = _create_admin_as(wat, csrf, "temp-one")
    b = _create_admin_as(wat, csrf, "temp-two")
    me = wat.world.admins["A"]
    data = {"csrf": csrf, "op": "delete", "ids": [str(a), str(b), str(me)]}
    ask = wat.client.post("/administrators/mass", data=data)
    assert ask.status_code == 200
    assert 'id="confirm"' in ask.text
    assert "temp-one" in ask.text
    assert wat.client.get(f"/administrators/{a}").status_code == 200  # nothing deleted yet
    done = wat.client.post("/administrators/mass", data={**data, "confirmed": "1"})
    result = done.text.split('id="mass-result"')[1].split("</section>")[0]
    assert "an administrator cannot delete itself" in result
    assert "adminA" in result
    assert wat.client.get(f"/administrators/{a}").status_code == 404
    assert wat.client.get(f"/administrators/{b}").status_code == 404
    assert wat.client.get(f"/administrators/{me}").status_code == 200


def _create_admin_as(wat: Wat, csrf: str, name: str) -> int:
    r = wat.client.post(
        "/administrators/new",
        data={"csrf": csrf, "name": name, "password": "a-secret-pw-1", "language": "auto"},
    )
    assert r.status_code == 303, r.text
    return created_id(r.headers["location"], "/administrators", done="")
