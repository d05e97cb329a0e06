"""The nodes pages (server side): list, details with their VMs, create, edit, block,
delete through the forms; the API's refusals shown with its message; nodes are the
superadmins' only."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from qvd.db.models import Host, HostRuntime
from tests.wat.conftest import Wat, created_id, set_vm_runtime


def test_list_shows_the_node_with_live_state(wat: Wat) -> None:
    wat.login()
    page = wat.client.get("/hosts")
    assert page.status_code == 200
    assert 'data-object="host"' in page.text
    assert f'<tr data-id="{wat.world.host}">' in page.text
    assert "node1" in page.text
    assert 'data-live-action="host_get_list"' in page.text
    assert 'data-field="state"' in page.text


def test_node_page_shows_facts_vms_and_live_state(wat: Wat, engine: Engine) -> None:
    set_vm_runtime(engine, wat.world.vms["A"], host_id=wat.world.host, vm_state="running")
    wat.login()
    page = wat.client.get(f"/hosts/{wat.world.host}")
    assert page.status_code == 200
    text = page.text
    assert "<h1>node1</h1>" in text
    assert 'id="host-live" data-live-action="host_get_list"' in text
    assert 'data-field="state" data-state="running"' in text
    assert "node1.nodes.test" in text
    vms = text.split('id="host-vms"')[1].split("</table>")[0]
    assert f'<a href="/vms/{wat.world.vms["A"]}">vmA</a>' in vms
    assert "vmB" not in vms
    assert 'data-live-action="vm_get_list"' in vms
    for button in ('id="block"', 'id="stop-vms"', 'id="delete"', 'id="edit"'):
        assert button in text


def test_create_edit_block_and_delete_a_node(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.get("/hosts/new")
    assert r.status_code == 200
    assert 'id="create"' in r.text
    r = wat.client.post("/hosts/new", data={"csrf": csrf, "name": "node7", "address": "10.9.0.7"})
    assert r.status_code == 303, r.text
    host_id = created_id(r.headers["location"], "/hosts")
    page = wat.client.get(r.headers["location"]).text
    assert "<h1>node7</h1>" in page
    assert "Created." in page

    r = wat.client.post(
        f"/hosts/{host_id}",
        data={"csrf": csrf, "name": "node8", "address": "10.9.0.8", "description": "rack 2"},
    )
    assert r.status_code == 303
    page = wat.client.get(f"/hosts/{host_id}").text
    assert "<h1>node8</h1>" in page
    history = page.split('id="object-history"')[1].split("</table>")[0]
    assert '<td data-field="action">host_update</td>' in history
    assert '<td data-field="admin_name">root</td>' in history
    assert "10.9.0.8" in page
    assert "rack 2" in page

    assert wat.client.post(f"/hosts/{host_id}/block", data={"csrf": csrf}).status_code == 303
    page = wat.client.get(f"/hosts/{host_id}").text
    assert 'id="unblock"' in page
    assert 'id="block"' not in page
    assert wat.client.post(f"/hosts/{host_id}/unblock", data={"csrf": csrf}).status_code == 303
    assert 'id="block"' in wat.client.get(f"/hosts/{host_id}").text

    r = wat.client.post(f"/hosts/{host_id}/delete", data={"csrf": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == "/hosts"
    assert wat.client.get(f"/hosts/{host_id}").status_code == 404


def test_refusals_show_the_apis_message_and_keep_what_was_typed(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.post("/hosts/new", data={"csrf": csrf, "name": "node1", "address": "10.9.0.9"})
    assert r.status_code == 409
    assert 'role="alert"' in r.text
    assert 'value="10.9.0.9"' in r.text
    r = wat.client.post("/hosts/new", data={"csrf": csrf, "name": "bad", "address": "a b;c"})
    assert r.status_code == 400
    assert "address" in r.text
    # a running node cannot be deleted: the API says why
    r = wat.client.post(f"/hosts/{wat.world.host}/delete", data={"csrf": csrf})
    assert r.status_code == 409
    assert "stop its HKD before deleting it" in r.text
    assert "<h1>node1</h1>" in r.text


def test_forms_need_the_csrf_token(wat: Wat) -> None:
    wat.login()
    r = wat.client.post("/hosts/new", data={"name": "node9", "address": "10.9.0.9"})
    assert r.status_code == 403
    r = wat.client.post(f"/hosts/{wat.world.host}/block", data={})
    assert r.status_code == 403


def test_a_missing_node_answers_404(wat: Wat) -> None:
    wat.login()
    r = wat.client.get("/hosts/999999")
    assert r.status_code == 404
    assert 'id="missing"' in r.text
    assert wat.client.get("/hosts/not-a-number").status_code == 404


def test_nodes_are_for_superadmins_only(wat: Wat, engine: Engine) -> None:
    csrf = wat.login("adminA", "tenantA")
    r = wat.client.get(f"/hosts/{wat.world.host}")
    assert r.status_code == 403
    assert 'id="refused"' in r.text
    assert "node1.nodes.test" not in r.text
    listing = wat.client.get("/hosts").text
    assert "node1.nodes.test" not in listing
    assert 'role="alert"' in listing
    r = wat.client.get("/hosts/new")
    assert r.status_code == 403
    assert 'id="create"' not in r.text
    r = wat.client.post("/hosts/new", data={"csrf": csrf, "name": "evil", "address": "10.9.0.66"})
    assert r.status_code == 403
    r = wat.client.post(f"/hosts/{wat.world.host}/block", data={"csrf": csrf})
    assert r.status_code in (403, 404)
    with Session(engine) as s:
        assert s.scalar(select(Host.id).where(Host.name == "evil")) is None
        blocked = s.scalar(select(HostRuntime.blocked).where(HostRuntime.host_id == wat.world.host))
        assert blocked is False


def test_properties_of_a_node_are_set_and_removed(wat: Wat) -> None:
    csrf = wat.login()
    body = {
        "action": "property_create",
        "arguments": {"key": "rack", "tenant_id": 0, "__property_assign__": ["host"]},
    }
    done = wat.act(csrf, **body)
    assert done["status"] == 0, done
    page = wat.client.get(f"/hosts/{wat.world.host}").text
    assert 'id="set-property"' in page
    assert '<option value="rack">' in page
    r = wat.client.post(
        f"/hosts/{wat.world.host}/properties", data={"csrf": csrf, "key": "rack", "value": "r12"}
    )
    assert r.status_code == 303
    page = wat.client.get(r.headers["location"]).text
    assert '<tr data-key="rack">' in page
    assert "r12" in page
    r = wat.client.post(
        f"/hosts/{wat.world.host}/properties", data={"csrf": csrf, "key": "nokey", "value": "x"}
    )
    assert r.status_code == 400
    assert "not registered" in r.text
    r = wat.client.post(
        f"/hosts/{wat.world.host}/properties/delete", data={"csrf": csrf, "key": "rack"}
    )
    assert r.status_code == 303
    assert '<tr data-key="rack">' not in wat.client.get(f"/hosts/{wat.world.host}").text


def test_ids_beyond_the_apis_range_answer_404(wat: Wat) -> None:
    csrf = wat.login()
    huge = 2**40
    for path in (f"/hosts/{huge}", f"/osfs/{huge}", f"/properties/{huge}"):
        assert wat.client.get(path).status_code == 404, path
        for suffix in ("", "/delete", "/properties", "/properties/delete"):
            if path.startswith("/properties") and suffix.startswith("/properties"):
                continue
            data = {"csrf": csrf, "name": "x", "key": "k", "value": "v", "address": "a"}
            r = wat.client.post(path + suffix, data=data)
            assert r.status_code == 404, (path + suffix, r.status_code)
    assert wat.client.post(f"/hosts/{huge}/block", data={"csrf": csrf}).status_code == 404


def test_mass_block_and_filter_by_state(wat: Wat) -> None:
    csrf = wat.login()
    host = str(wat.world.host)
    r = wat.client.post("/hosts/mass", data={"csrf": csrf, "op": "block", "ids": [host]})
    assert r.status_code == 200, r.text
    assert "Block: 1 done" in r.text
    assert 'id="unblock"' in wat.client.get(f"/hosts/{host}").text
    assert f'<tr data-id="{host}">' in wat.client.get("/hosts?f.state=running").text
    assert f'<tr data-id="{host}">' not in wat.client.get("/hosts?f.state=lost").text
    ask = wat.client.post("/hosts/mass", data={"csrf": csrf, "op": "delete", "ids": [host]})
    assert 'id="confirm"' in ask.text
    done = wat.client.post(
        "/hosts/mass", data={"csrf": csrf, "op": "delete", "ids": [host], "confirmed": "1"}
    )
    assert "stop its HKD before deleting it" in done.text
