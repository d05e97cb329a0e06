"""What every object page shares (qvd.wat.pages.objectpages): one refusal → HTTP status
mapping, the 404 page of ids that cannot be ids, the reloaded button URLs (a session
first), and the one properties block with its two routes."""

from __future__ import annotations

import pytest

from qvd.wat.pages.objectpages import http_status, known_id, refusal_status
from qvd.wat.port import WatError
from tests.wat.conftest import Wat


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (4210, 403),  # forbidden action
        (3500, 403),  # tenant restricted
        (3300, 401),  # session expired
        (7100, 404),  # missing reference
        (1300, 404),  # nothing selected
        (7120, 409),  # has dependents
        (5130, 409),  # cannot start
        (5140, 503),  # no node to start on
        (6230, 400),  # bad argument
        (1100, 500),  # the API's own failure
    ],
)
def test_one_mapping_of_qvd_codes_to_http(code: int, status: int) -> None:
    assert http_status(code) == status


def test_a_refusal_of_one_object_counts_as_that_objects_reason() -> None:
    one = WatError("failed for 1 of 1", 1200, failures={7: (7310, "the VM is running")})
    assert refusal_status(one) == 409
    forbidden = WatError("failed for 1 of 1", 1200, failures={7: (4230, "no ACL")})
    assert refusal_status(forbidden) == 403
    mixed = WatError("failed", 1200, failures={7: (4230, "no ACL"), 8: (7100, "gone")})
    assert refusal_status(mixed) == 409  # no one reason: the action's own (some failed)


def test_known_ids_are_positive_int32() -> None:
    assert all(known_id(i) for i in (1, 2**31 - 1))
    assert not any(known_id(i) for i in (0, -5, 2**31))


def test_reloaded_button_urls_need_a_session_then_lead_to_the_object(wat: Wat) -> None:
    vm, user, host = wat.world.vms["A"], wat.world.users["A"], wat.world.host
    tenant, prop = wat.world.tenants["A"], wat.world.props["A"]
    reloaded = [
        f"/vms/{vm}/start",
        f"/users/{user}/delete",
        f"/hosts/{host}/block",
        f"/tenants/{tenant}/delete",
        f"/properties/{prop}/delete",
    ]
    for url in reloaded:
        r = wat.client.get(url)
        assert r.status_code == 303, url
        assert r.headers["location"].startswith("/login?next="), url
    wat.login()
    for url in reloaded:
        r = wat.client.get(url)
        assert r.status_code == 303, url
        assert r.headers["location"] == url.rsplit("/", 1)[0], url


def test_ids_that_cannot_be_ids_answer_404_everywhere(wat: Wat) -> None:
    csrf = wat.login()
    for base in ("/dis", "/tenants", "/logs", "/vms", "/users", "/hosts", "/osfs", "/properties"):
        for bad in ("not-a-number", str(2**40)):
            r = wat.client.get(f"{base}/{bad}")
            if base == "/logs" and bad.isdigit():
                continue  # log ids are not int32: the API answers for them
            assert r.status_code == 404, (base, bad, r.status_code)
    r = wat.client.get("/osfs/not-a-number/tags")
    assert r.status_code == 404
    r = wat.client.post(f"/dis/{2**40}/delete", data={"csrf": csrf})
    assert r.status_code == 404
    assert 'id="missing"' in r.text


def test_another_tenants_object_reads_as_missing_on_the_shared_page(wat: Wat) -> None:
    wat.login("adminA", "tenantA")
    r = wat.client.get(f"/vms/{wat.world.vms['B']}")
    assert r.status_code == 404
    assert 'id="not-found"' in r.text
    assert 'id="missing"' in r.text
    assert "vmB" not in r.text
    assert '<a href="/vms">' in r.text


def test_the_properties_block_sets_and_removes_a_key_on_a_vm(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    assigned = wat.client.post(
        "/api", json={"action": "vm_create_property_list",
                      "arguments": {"property_id": wat.world.props["A"]}},
        headers={"X-CSRF-Token": csrf},
    )  # fmt: skip
    assert assigned.json()["status"] == 0, assigned.text
    vm = wat.world.vms["A"]
    page = wat.client.get(f"/vms/{vm}").text
    assert 'id="set-property"' in page
    r = wat.client.post(f"/vms/{vm}/properties", data={"csrf": csrf, "key": "propA", "value": "x1"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/vms/{vm}?done=property#properties"
    page = wat.client.get(r.headers["location"]).text
    assert '<tr data-key="propA"><td>propA</td><td>x1</td>' in page
    assert "Property saved." in page
    assert f'action="/vms/{vm}/properties/delete"' in page
    r = wat.client.post(f"/vms/{vm}/properties/delete", data={"csrf": csrf, "key": "propA"})
    assert r.status_code == 303
    assert 'data-key="propA"' not in wat.client.get(f"/vms/{vm}").text
    # without the page's anti-CSRF token nothing changes
    r = wat.client.post(f"/vms/{vm}/properties", data={"key": "propA", "value": "evil"})
    assert r.status_code == 403
    assert 'data-key="propA"' not in wat.client.get(f"/vms/{vm}").text


def test_saving_a_tenant_unchanged_asks_the_api_for_nothing(wat: Wat) -> None:
    """Each field needs its own ACL: an edit sends only what changed (the tenant form
    used to send ``blocked`` every time, needing ``tenant.update.block`` for a rename)."""
    csrf = wat.login()
    a = wat.world.tenants["A"]

    def updates() -> int:
        body = {"action": "log_get_list", "filters": {"action": "tenant_update"}}
        answer = wat.client.post("/api", json=body, headers={"X-CSRF-Token": csrf}).json()
        assert answer["status"] == 0, answer
        return int(answer["total"])

    before = updates()
    page = wat.client.get(f"/tenants/{a}").text
    assert 'name="blocked"' in page
    same = {"csrf": csrf, "name": "tenantA", "language": "", "block": "", "description": ""}
    r = wat.client.post(f"/tenants/{a}", data=same)
    assert r.status_code == 303, r.text
    assert updates() == before
    r = wat.client.post(f"/tenants/{a}", data={**same, "blocked": "1"})
    assert r.status_code == 303
    assert updates() == before + 1
