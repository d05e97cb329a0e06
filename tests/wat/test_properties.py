"""The property definition pages (server side): list, create, edit, delete through the
forms; the API's refusals shown; tenant scope."""

from __future__ import annotations

import re

from tests.wat.conftest import Wat


def _create(wat: Wat, csrf: str, **fields: object) -> str:
    r = wat.client.post("/properties/new", data={"csrf": csrf, **fields})
    assert r.status_code == 303, r.text
    match = re.fullmatch(r"/properties/(\d+)\?done=created", r.headers["location"])
    assert match
    return match.group(1)


def test_list_shows_the_keys_of_the_tenant(wat: Wat) -> None:
    wat.login("adminA", "tenantA")
    page = wat.client.get("/properties")
    assert page.status_code == 200
    assert 'data-object="property"' in page.text
    assert f'<tr data-id="{wat.world.props["A"]}">' in page.text
    assert "propB" not in page.text
    assert 'data-field="in_vm"' in page.text


def test_create_edit_and_delete_a_property(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    page = wat.client.get("/properties/new").text
    assert 'id="create"' in page
    assert 'value="host"' not in page  # node properties are the superadmins'
    assert 'name="tenant_id"' not in page
    prop_id = _create(wat, csrf, key="building", description="where", objects=["vm", "user"])
    page = wat.client.get(f"/properties/{prop_id}?done=created").text
    assert "<h1>building</h1>" in page
    assert "Created." in page
    applies = page.split('data-field="objects">')[1].split("</dd>")[0]
    assert applies == "Users, Virtual machines"

    r = wat.client.post(
        f"/properties/{prop_id}",
        data={"csrf": csrf, "key": "floor", "description": "", "objects": ["osf"]},
    )
    assert r.status_code == 303, r.text
    page = wat.client.get(f"/properties/{prop_id}").text
    assert "<h1>floor</h1>" in page
    assert page.split('data-field="objects">')[1].split("</dd>")[0] == "OS flavours"
    assert 'data-field="description">—<' in page
    listing = wat.client.get("/properties").text
    row = listing.split(f'<tr data-id="{prop_id}">')[1].split("</tr>")[0]
    assert re.search(r'data-field="in_osf"[^>]*>✔', row)
    assert not re.search(r'data-field="in_vm"[^>]*>✔', row)

    r = wat.client.post(f"/properties/{prop_id}/delete", data={"csrf": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == "/properties"
    assert wat.client.get(f"/properties/{prop_id}").status_code == 404


def test_superadmin_creates_a_node_property_in_the_supertenant(wat: Wat) -> None:
    csrf = wat.login()
    page = wat.client.get("/properties/new").text
    assert 'name="tenant_id"' in page
    assert 'value="host"' in page
    prop_id = _create(wat, csrf, key="rack", tenant_id="0", objects=["host"])
    page = wat.client.get(f"/properties/{prop_id}").text
    assert 'data-field="tenant_name">*<' in page
    node = wat.client.get(f"/hosts/{wat.world.host}").text
    assert '<option value="rack">' in node


def test_refusals_show_the_apis_message(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    r = wat.client.post(
        "/properties/new", data={"csrf": csrf, "key": "bad key!", "objects": ["vm"]}
    )
    assert r.status_code == 400
    assert 'role="alert"' in r.text
    assert 'value="bad key!"' in r.text
    r = wat.client.post("/properties/new", data={"csrf": csrf, "key": "propA", "objects": ["vm"]})
    assert r.status_code == 409
    assert 'role="alert"' in r.text
    r = wat.client.post("/properties/new", data={"csrf": csrf, "key": "nodes", "objects": ["host"]})
    assert r.status_code == 403
    assert "superadmins" in r.text


def test_another_tenants_property_is_not_found(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    other = wat.world.props["B"]
    assert wat.client.get(f"/properties/{other}").status_code == 404
    r = wat.client.post(f"/properties/{other}", data={"csrf": csrf, "key": "stolen"})
    assert r.status_code == 404
    assert wat.client.post(f"/properties/{other}/delete", data={"csrf": csrf}).status_code == 404
    wat.login()
    assert "<h1>propB</h1>" in wat.client.get(f"/properties/{other}").text


def test_mass_delete_names_the_keys_and_asks_first(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    prop = str(wat.world.props["A"])
    ask = wat.client.post("/properties/mass", data={"csrf": csrf, "op": "delete", "ids": [prop]})
    assert 'id="confirm"' in ask.text
    assert "propA" in ask.text
    data = {"csrf": csrf, "op": "delete", "ids": [prop], "confirmed": "1"}
    done = wat.client.post("/properties/mass", data=data)
    assert "1 done" in done.text
    assert wat.client.get(f"/properties/{prop}").status_code == 404
