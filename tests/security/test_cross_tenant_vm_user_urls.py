"""A tenant administrator reaching another tenant's VMs and users by URL in the WAT
(guessed ids in ``/vms/<id>`` and ``/users/<id>``, and the forms that change them): the
pages answer 404 without the object's name, and nothing changes.

The guard: every read and change goes through the API's actions as the logged-in
administrator (tenant scope), and the WAT shows an absent object as not found."""

from __future__ import annotations

from tests.wat.conftest import Wat, wat  # noqa: F401  (the fixture)


def test_another_tenants_vm_and_user_can_be_neither_seen_nor_changed(wat: Wat) -> None:  # noqa: F811
    csrf = wat.login("adminA", "tenantA")
    vm_b, user_b = wat.world.vms["B"], wat.world.users["B"]
    for path in (f"/vms/{vm_b}", f"/users/{user_b}"):
        r = wat.client.get(path)
        assert r.status_code == 404, path
        assert "vmB" not in r.text
        assert "userb" not in r.text
    attempts = [
        (f"/vms/{vm_b}", {"name": "taken", "description": "owned"}),
        (f"/vms/{vm_b}/block", {}),
        (f"/vms/{vm_b}/start", {}),
        (f"/vms/{vm_b}/properties", {"key": "propB", "value": "x"}),
        (f"/vms/{vm_b}/delete", {}),
        (f"/users/{user_b}", {"description": "owned", "password": "taken-pass-1", "blocked": "1"}),
        (f"/users/{user_b}/properties", {"key": "propB", "value": "x"}),
        (f"/users/{user_b}/delete", {}),
    ]
    for path, data in attempts:
        r = wat.client.post(path, data={"csrf": csrf, **data})
        assert r.status_code == 404, (path, r.status_code)
        assert "vmB" not in r.text
        assert "userb" not in r.text
    # a VM for another tenant's user cannot be made either
    r = wat.client.post(
        "/vms/new",
        data={"csrf": csrf, "name": "sneaky", "user_id": str(user_b),
              "osf_id": str(wat.world.osfs["A"])},
    )  # fmt: skip
    assert r.status_code == 404
    # the superadmin sees tenant B's objects as they were
    wat.login()
    vm_page = wat.client.get(f"/vms/{vm_b}").text
    assert "<h1>vmB</h1>" in vm_page
    assert 'data-field="state" data-state="stopped"' in vm_page
    assert 'id="vm-block"' in vm_page  # not blocked
    assert "owned" not in vm_page
    user_page = wat.client.get(f"/users/{user_b}").text
    assert "<h1>userb</h1>" in user_page
    assert "owned" not in user_page
    assert "checked" not in user_page.split('id="f-blocked"')[1][:60]
    assert "sneaky" not in wat.client.get("/vms").text
