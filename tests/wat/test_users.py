"""The user pages of the WAT (server side): creating a user (superadmin picks the
tenant), a user's page with their VMs and the link to a new VM for them, editing
(password never shown), blocking, deleting, properties; refusals with the API's
message; a tenant administrator kept to their tenant."""

from __future__ import annotations

from sqlalchemy import Engine

from qvd.wat.pages import users
from tests.wat.conftest import Wat, created_id, set_vm_runtime


def test_superadmin_creates_a_user_in_a_chosen_tenant(wat: Wat) -> None:
    csrf = wat.login()
    form = wat.client.get("/users/new")
    assert form.status_code == 200
    for field in ('id="create"', 'id="f-name"', 'id="f-password"', 'id="f-tenant_id"'):
        assert field in form.text
    assert f'<option value="{wat.world.tenants["B"]}">tenantB</option>' in form.text
    r = wat.client.post(
        "/users/new",
        data={"csrf": csrf, "name": "Alice", "password": "s3cret-pass-1",
              "tenant_id": str(wat.world.tenants["B"])},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    user_id = created_id(r.headers["location"], "/users")
    page = wat.client.get(r.headers["location"]).text
    assert "<h1>alice</h1>" in page  # logins are lower-cased unless case-sensitive
    assert "tenantB" in page
    assert "s3cret-pass-1" not in page
    assert f'href="/vms/new?user_id={user_id}"' in page


def test_a_refused_create_keeps_the_name_not_the_password(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.post("/users/new", data={"csrf": csrf, "name": "bob", "password": "pw-x-1234"})
    assert r.status_code == 400
    assert "superadmins must say which tenant" in r.text
    assert 'value="bob"' in r.text
    assert "pw-x-1234" not in r.text
    csrf = wat.login("adminA", "tenantA")
    form = wat.client.get("/users/new").text
    assert 'id="f-tenant_id"' not in form
    r = wat.client.post("/users/new", data={"csrf": csrf, "name": "usera", "password": "pw-y-1234"})
    assert r.status_code == 409
    assert 'class="flash error"' in r.text
    assert "pw-y-1234" not in r.text


def test_user_page_lists_their_vms_live(wat: Wat) -> None:
    wat.login("adminA", "tenantA")
    user_id = wat.world.users["A"]
    r = wat.client.get(f"/users/{user_id}")
    assert r.status_code == 200
    html = r.text
    assert "<h1>usera</h1>" in html
    table = html.split('id="user-vms"')[1].split("</table>")[0]
    assert 'data-live-action="vm_get_list"' in table
    assert 'data-live-fields="state,user_state,host_name,blocked"' in table
    assert f'<tr data-id="{wat.world.vms["A"]}">' in table
    assert f'<a href="/vms/{wat.world.vms["A"]}">vmA</a>' in table
    assert 'data-field="state" data-kind="state" data-state="stopped"' in table
    assert 'id="f-password" name="password" type="password" value=""' in html
    assert 'id="user-delete"' in html


def test_a_tenant_admin_gets_404_for_another_tenants_user(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    other = wat.world.users["B"]
    r = wat.client.get(f"/users/{other}")
    assert r.status_code == 404
    assert "There is no such user" in r.text
    assert "userb" not in r.text
    for path in (f"/users/{other}", f"/users/{other}/delete", f"/users/{other}/properties"):
        r = wat.client.post(path, data={"csrf": csrf, "blocked": "1", "key": "k", "value": "v"})
        assert r.status_code == 404, path
        assert "userb" not in r.text


def test_edit_password_and_block_then_delete(wat: Wat, engine: Engine) -> None:
    csrf = wat.login("adminA", "tenantA")
    user_id = wat.world.users["A"]
    r = wat.client.post(
        f"/users/{user_id}",
        data={"csrf": csrf, "description": "desk <owner>", "password": "new-pass-123",
              "blocked_shown": "1", "blocked": "1"},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    page = wat.client.get(r.headers["location"]).text
    assert "Changes saved." in page
    assert "desk &lt;owner&gt;" in page
    assert 'id="f-blocked" name="blocked" type="checkbox" value="1" checked' in page
    assert "new-pass-123" not in page
    listing = wat.client.get("/users").text
    row = listing.split(f'<tr data-id="{user_id}">')[1].split("</tr>")[0]
    assert '<td data-field="blocked" data-kind="bool">✔</td>' in row
    # unchecked: unblocked
    r = wat.client.post(
        f"/users/{user_id}",
        data={"csrf": csrf, "description": "desk <owner>", "blocked_shown": "1"},
    )
    assert r.status_code == 303
    assert "checked" not in wat.client.get(f"/users/{user_id}").text.split('id="f-blocked"')[1][:60]
    # a user whose VM is not stopped cannot be deleted: the API's message
    set_vm_runtime(engine, wat.world.vms["A"], vm_state="running")
    r = wat.client.post(f"/users/{user_id}/delete", data={"csrf": csrf})
    assert r.status_code == 409
    assert "has 1 VM(s) not stopped; stop them first" in r.text
    assert "<h1>usera</h1>" in r.text
    # a fresh user goes
    made = wat.client.post(
        "/users/new", data={"csrf": csrf, "name": "gone", "password": "pw-z-1234"}
    )
    gone = created_id(made.headers["location"], "/users")
    r = wat.client.post(f"/users/{gone}/delete", data={"csrf": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == "/users"
    assert wat.client.get(f"/users/{gone}").status_code == 404


def test_user_properties(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    user_id = wat.world.users["A"]
    wat.assign_property(csrf, "user")
    r = wat.client.post(f"/users/{user_id}/properties",
                        data={"csrf": csrf, "key": "propA", "value": "42"})  # fmt: skip
    assert r.status_code == 303
    assert (
        '<tr data-key="propA"><td>propA</td><td>42</td>' in wat.client.get(f"/users/{user_id}").text
    )


def test_user_list_columns_and_mass_actions(wat: Wat) -> None:
    names = {m.name: m for m in users.MASS}
    assert names["block"].arguments == {"blocked": True}
    assert names["delete"].confirm
    assert "set_property" in names
    wat.login()
    page = wat.client.get("/users").text
    assert 'data-object="user"' in page
    assert '<th scope="col" data-field="tenant_name"' in page
    assert users.VIEW.create == "/users/new"
    wat.login("adminA", "tenantA")
    page = wat.client.get("/users").text
    assert 'data-field="tenant_name"' not in page
    assert "usera" in page
    assert "userb" not in page


def test_mass_block_and_set_property_on_the_user_list(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    made = wat.client.post("/users/new", data={"csrf": csrf, "name": "dave",
                                               "password": "dave-pass-123"})  # fmt: skip
    ids = [str(wat.world.users["A"]), str(created_id(made.headers["location"], "/users"))]
    r = wat.mass(csrf, "/users", "block", ids)
    assert r.status_code == 200
    assert "2 done" in r.text
    wat.assign_property(csrf, "user")
    r = wat.mass(csrf, "/users", "set_property", ids, key="propA", value="x1")
    assert "2 done" in r.text
    for user_id in ids:
        page = wat.client.get(f"/users/{user_id}").text
        assert 'value="1" checked' in page.split('id="f-blocked"')[1][:80]
        assert '<tr data-key="propA"><td>propA</td><td>x1</td>' in page
