"""The VM pages of the WAT (server side): a VM's page with its live facts, buttons and
history; creating, editing, starting and deleting a VM; the API's refusals shown with
the values typed kept; a tenant administrator kept to their tenant."""

from __future__ import annotations

import re

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.wat.pages import vms
from tests.api.conftest import add_admin
from tests.wat.conftest import Wat, created_id, set_vm_runtime


def test_vm_page_shows_live_facts_buttons_and_a_disabled_spy(wat: Wat) -> None:
    wat.login()
    vm_id = wat.world.vms["A"]
    r = wat.client.get(f"/vms/{vm_id}")
    assert r.status_code == 200, r.text
    html = r.text
    assert "<h1>vmA</h1>" in html
    assert (
        '<div id="vm-live" data-live-action="vm_get_list" '
        'data-live-fields="state,user_state,host_name,blocked">'
    ) in html
    assert f'<dl class="details live" data-id="{vm_id}">' in html
    assert 'data-field="state" data-state="stopped"' in html
    assert '<dl class="details">' in html
    # a stopped VM cannot be spied: the buttons say why (tests/wat/test_spy.py)
    spy = re.search(r'<button type="submit" id="vm-spy"([^>]*)>([^<]*)</button>', html)
    assert spy, "no spy button"
    assert 'aria-disabled="true"' in spy.group(1)
    assert 'id="vm-spy-why"' in html
    for button in ("vm-start", "vm-stop", "vm-disconnect", "vm-block", "vm-delete", "edit"):
        assert f'id="{button}"' in html
    assert "vm-unblock" not in html
    assert f'href="/users/{wat.world.users["A"]}">usera</a>' in html
    assert f'href="/osfs/{wat.world.osfs["A"]}">osfA</a>' in html
    assert 'data-confirm="Delete this virtual machine? vmA"' in html
    # the tag choice comes from the OSF's tags
    assert '<option value="default" selected>default</option>' in html
    assert '<option value="head">head</option>' in html


def test_a_tenant_admin_gets_404_for_another_tenants_vm(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    assert wat.client.get(f"/vms/{wat.world.vms['A']}").status_code == 200
    other = wat.world.vms["B"]
    r = wat.client.get(f"/vms/{other}")
    assert r.status_code == 404
    assert "There is no such virtual machine" in r.text
    assert "vmB" not in r.text
    assert wat.client.get("/vms/999999").status_code == 404
    assert wat.client.get("/vms/99999999999999999999").status_code == 404
    # changes by URL are refused too, and reveal nothing
    for verb in ("start", "block", "delete"):
        r = wat.client.post(f"/vms/{other}/{verb}", data={"csrf": csrf})
        assert r.status_code == 404, verb
        assert "vmB" not in r.text
    r = wat.client.post(f"/vms/{other}", data={"csrf": csrf, "name": "stolen"})
    assert r.status_code == 404


def test_create_a_vm_for_a_user_then_see_it(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    user_id = wat.world.users["A"]
    form = wat.client.get(f"/vms/new?user_id={user_id}")
    assert form.status_code == 200
    assert 'id="create"' in form.text
    assert f'<option value="{user_id}" selected>usera</option>' in form.text
    assert "osfA" in form.text
    assert "osfB" not in form.text
    r = wat.client.post(
        "/vms/new",
        data={"csrf": csrf, "name": "desk1", "user_id": str(user_id),
              "osf_id": str(wat.world.osfs["A"]), "di_tag": "default",
              "description": "for the <test>"},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    vm_id = created_id(r.headers["location"], "/vms")
    page = wat.client.get(r.headers["location"])
    assert "<h1>desk1</h1>" in page.text
    assert f'<dl class="details live" data-id="{vm_id}">' in page.text
    assert "Created." in page.text
    assert "for the &lt;test&gt;" in page.text


def test_a_refused_create_shows_the_api_message_and_keeps_what_was_typed(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    r = wat.client.post(
        "/vms/new",
        data={"csrf": csrf, "name": "bad name\u202e", "user_id": str(wat.world.users["A"]),
              "osf_id": str(wat.world.osfs["A"]), "di_tag": "default", "description": "kept"},
    )  # fmt: skip
    assert r.status_code == 400
    assert 'class="flash error"' in r.text
    assert "vm" in r.text.split('class="flash error"')[1].split("</p>")[0]
    assert 'value="bad name\u202e"' in r.text
    assert ">kept</textarea>" in r.text
    # another tenant's OSF: the API says the reference is missing (out of scope)
    r = wat.client.post(
        "/vms/new",
        data={"csrf": csrf, "name": "desk2", "user_id": str(wat.world.users["A"]),
              "osf_id": str(wat.world.osfs["B"])},
    )  # fmt: skip
    assert r.status_code == 404
    assert f"vm: there is no osf {wat.world.osfs['B']}" in r.text


def test_create_needs_the_csrf_token(wat: Wat) -> None:
    wat.login()
    r = wat.client.post("/vms/new", data={"name": "x", "user_id": str(wat.world.users["A"])})
    assert r.status_code == 403


def test_edit_changes_only_what_changed(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    vm_id = wat.world.vms["A"]
    r = wat.client.post(
        f"/vms/{vm_id}",
        data={"csrf": csrf, "name": "vmA2", "description": "", "di_tag": "head",
              "expiration_soft": "2031-01-02T03:04", "expiration_hard": ""},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/vms/{vm_id}?done=saved"
    page = wat.client.get(r.headers["location"]).text
    assert "<h1>vmA2</h1>" in page
    assert "2031-01-02 03:04:00 UTC" in page
    assert 'value="2031-01-02T03:04"' in page
    assert '<option value="head" selected>head</option>' in page
    # a form without a field leaves it; an emptied one clears it
    r = wat.client.post(f"/vms/{vm_id}", data={"csrf": csrf, "expiration_soft": ""})
    assert r.status_code == 303
    page = wat.client.get(f"/vms/{vm_id}").text
    assert "<h1>vmA2</h1>" in page
    assert "2031-01-02" not in page
    # a refused change keeps the typed values and shows why
    r = wat.client.post(f"/vms/{vm_id}", data={"csrf": csrf, "name": "", "di_tag": "head"})
    assert r.status_code == 400
    assert 'class="flash error"' in r.text
    assert "<h1>vmA2</h1>" in r.text


def test_start_shows_in_the_history_and_a_started_vm_cannot_be_deleted(
    wat: Wat, engine: Engine
) -> None:
    csrf = wat.login("adminA", "tenantA")
    vm_id = wat.world.vms["A"]
    r = wat.client.post(f"/vms/{vm_id}/start", data={"csrf": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == f"/vms/{vm_id}?done=start"
    page = wat.client.get(r.headers["location"]).text
    assert "Start requested" in page
    history = page.split('id="history"')[1].split("</table>")[0]
    assert '<td data-field="action">vm_start</td>' in history
    assert '<dd data-field="vm_cmd">start</dd>' in page
    # starting again: the API's refusal, shown on the VM's page
    r = wat.client.post(f"/vms/{vm_id}/start", data={"csrf": csrf})
    assert r.status_code == 409
    assert "only a stopped VM can be started" in r.text
    reload = wat.client.get(f"/vms/{vm_id}/start")  # a reload of that page
    assert reload.status_code == 303
    assert reload.headers["location"] == f"/vms/{vm_id}"
    set_vm_runtime(engine, vm_id, vm_state="running", vm_cmd=None)
    page = wat.client.get(f"/vms/{vm_id}").text
    assert 'data-field="state" data-state="running"' in page
    assert 'data-field="host_name">node1<' in page
    r = wat.client.post(f"/vms/{vm_id}/delete", data={"csrf": csrf})
    assert r.status_code == 409
    assert "stop it before deleting it" in r.text
    r = wat.client.post(f"/vms/{vm_id}/stop", data={"csrf": csrf})
    assert r.status_code == 303
    history = wat.client.get(f"/vms/{vm_id}").text.split('id="history"')[1]
    rows = re.findall(
        r'<td data-field="action">(\w+)</td>.*?<td data-field="status">(\w+)</td>', history
    )
    # newest first; refusals are in the audit log too, with their status
    assert rows[:4] == [("vm_stop", "done"), ("vm_delete", "7310"), ("vm_start", "5130"),
                        ("vm_start", "done")]  # fmt: skip


def test_block_unblock_and_delete(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    vm_id = wat.world.vms["A"]
    assert wat.client.post(f"/vms/{vm_id}/block", data={"csrf": csrf}).status_code == 303
    page = wat.client.get(f"/vms/{vm_id}").text
    assert 'data-field="blocked" data-kind="bool">✔<' in page
    assert 'id="vm-unblock"' in page
    assert 'id="vm-block"' not in page
    assert wat.client.post(f"/vms/{vm_id}/unblock", data={"csrf": csrf}).status_code == 303
    assert 'id="vm-block"' in wat.client.get(f"/vms/{vm_id}").text
    assert wat.client.post(f"/vms/{vm_id}/nonsense", data={"csrf": csrf}).status_code == 404
    r = wat.client.post(f"/vms/{vm_id}/delete", data={"csrf": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == "/vms"
    assert wat.client.get(f"/vms/{vm_id}").status_code == 404


def test_properties_set_and_removed(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    vm_id = wat.world.vms["A"]
    r = wat.client.post(f"/vms/{vm_id}/properties",
                        data={"csrf": csrf, "key": "propA", "value": "v1"})  # fmt: skip
    assert r.status_code == 400  # not assigned to VMs yet: the API says so
    assert "propA" in r.text
    wat.assign_property(csrf, "vm")
    r = wat.client.post(f"/vms/{vm_id}/properties",
                        data={"csrf": csrf, "key": "propA", "value": "<v1>"})  # fmt: skip
    assert r.status_code == 303
    page = wat.client.get(f"/vms/{vm_id}").text
    assert '<tr data-key="propA"><td>propA</td><td>&lt;v1&gt;</td>' in page
    r = wat.client.post(f"/vms/{vm_id}/properties", data={"csrf": csrf, "delete": "propA"})
    assert r.status_code == 303
    assert 'data-key="propA"' not in wat.client.get(f"/vms/{vm_id}").text


def test_list_declares_the_mass_actions_and_links_to_new(wat: Wat) -> None:
    names = {m.name: m for m in vms.MASS}
    assert names["block"].arguments == {"blocked": True}
    assert names["unblock"].arguments == {"blocked": False}
    assert names["delete"].confirm
    assert names["delete"].action == "vm_delete"
    assert {"start", "stop", "disconnect", "set_property", "move_tag"} <= set(names)
    wat.login()
    assert vms.VIEW.create == "/vms/new"
    page = wat.client.get("/vms").text
    assert 'data-object="vm"' in page


def test_vm_page_in_spanish(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    wat.client.post("/settings/language", data={"csrf": csrf, "language": "es", "next": "/"})
    page = wat.client.get(f"/vms/{wat.world.vms['A']}").text
    assert '<html lang="es">' in page
    assert ">Arrancar</button>" in page
    assert ">Espiar</button>" in page
    assert "Para espiar, la máquina virtual debe estar en marcha." in page
    assert "Esa máquina virtual no existe" in wat.client.get("/vms/999999").text


def test_superadmin_new_vm_form_names_the_tenants(wat: Wat) -> None:
    wat.login()
    user_b = wat.world.users["B"]
    form = wat.client.get(f"/vms/new?user_id={user_b}").text
    assert f'<option value="{user_b}" selected>userb (tenantB)</option>' in form
    assert "usera (tenantA)" in form
    # the OSFs offered are those of the chosen user's tenant
    assert "osfB (tenantB)" in form
    assert "osfA" not in form
    page = wat.client.get("/vms").text
    assert '<th scope="col" data-field="tenant_name"' in page


def test_a_reader_sees_no_buttons_and_the_api_refuses_a_forged_start(
    wat: Wat, engine: Engine
) -> None:
    with Session(engine) as s, s.begin():
        add_admin(s, "readerA", wat.world.tenants["A"], role="VMs Reader")
    csrf = wat.login("readerA", "tenantA")
    vm_id = wat.world.vms["A"]
    page = wat.client.get(f"/vms/{vm_id}")
    assert page.status_code == 200, page.text
    assert "<h1>vmA</h1>" in page.text
    for button in ("vm-start", "vm-stop", "vm-block", "vm-delete", 'id="edit"'):
        assert button not in page.text
    assert 'id="vm-spy"' not in page.text  # a reader may not spy
    r = wat.client.post(f"/vms/{vm_id}/start", data={"csrf": csrf})
    assert r.status_code == 403
    assert 'class="flash error"' in r.text
    assert "vm_start" in r.text.split('class="flash error"')[1].split("</p>")[0]
    r = wat.client.post(f"/vms/{vm_id}", data={"csrf": csrf, "name": "renamed"})
    assert r.status_code == 403
    assert "<h1>vmA</h1>" in r.text


def test_mass_move_tag_block_and_set_property_on_the_vm_list(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    made = [
        wat.client.post(
            "/vms/new",
            data={
                "csrf": csrf,
                "name": f"m{i}",
                "user_id": str(wat.world.users["A"]),
                "osf_id": str(wat.world.osfs["A"]),
            },
        )
        for i in range(2)
    ]
    ids = [str(wat.world.vms["A"]), *(created_id(r.headers["location"], "/vms") for r in made)]
    listing = wat.client.get("/vms").text
    for op in ("start", "stop", "disconnect", "block", "unblock", "delete", "set_property",
               "move_tag"):  # fmt: skip
        assert f'value="{op}"' in listing, op
    r = wat.mass(csrf, "/vms", "move_tag", ids, di_tag="head")
    assert r.status_code == 200
    assert "3 done" in r.text
    r = wat.mass(csrf, "/vms", "block", ids)
    assert "3 done" in r.text
    wat.assign_property(csrf, "vm")
    r = wat.mass(csrf, "/vms", "set_property", ids, key="propA", value="lab")
    assert "3 done" in r.text
    for vm_id in ids:
        page = wat.client.get(f"/vms/{vm_id}").text
        assert '<option value="head" selected>head</option>' in page
        assert 'id="vm-unblock"' in page
        assert '<tr data-key="propA"><td>propA</td><td>lab</td>' in page
