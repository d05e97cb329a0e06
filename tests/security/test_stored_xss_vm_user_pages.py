"""Stored cross-site scripting through the VM and user pages of the WAT: a tenant
administrator writes markup into what another administrator's browser will show (a
VM's or user's description, a property value); the pages must show it as text.

The guard: Jinja autoescaping of every value the API returns (nothing marked safe).
The attack runs against the real WAT over the API's actions and database."""

from __future__ import annotations

from tests.wat.conftest import Wat, wat  # noqa: F401  (the fixture)

PAYLOAD = '<img src=x onerror="alert(1)"><script>alert(2)</script>" data-x=\''


def _plant(admin: Wat) -> tuple[int, int]:
    """As tenant A's administrator, put the payload where the pages show it."""
    csrf = admin.login("adminA", "tenantA")
    vm_id, user_id = admin.world.vms["A"], admin.world.users["A"]
    prop = admin.world.props["A"]
    for obj in ("vm", "user"):
        r = admin.client.post(
            "/api",
            json={"action": f"{obj}_create_property_list", "arguments": {"property_id": prop}},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.json()["status"] == 0, r.text
    for path in (f"/vms/{vm_id}", f"/users/{user_id}"):
        r = admin.client.post(path, data={"csrf": csrf, "description": PAYLOAD})
        assert r.status_code == 303, r.text
        r = admin.client.post(
            f"{path}/properties", data={"csrf": csrf, "key": "propA", "value": PAYLOAD}
        )
        assert r.status_code == 303, r.text
    return vm_id, user_id


def test_markup_in_descriptions_and_properties_is_shown_as_text(wat: Wat) -> None:  # noqa: F811
    vm_id, user_id = _plant(wat)
    wat.login()  # the superadmin looks
    escaped = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
    for path in (f"/vms/{vm_id}", f"/users/{user_id}"):
        html = wat.client.get(path).text
        assert "<img src=x" not in html, path
        assert "<script>alert" not in html, path
        assert 'onerror="alert' not in html, path
        # shown (as text) in the facts, the property table and the edit form
        assert html.count(escaped) >= 3, path
