"""The WAT's spy buttons and launcher (server side, real API app and database): the
buttons follow the ACLs and the VM's state, the POST asks the API for a ticket and
answers a form that posts it (never in a URL) to the VM's portal, and only that page's
CSP lets a form leave the WAT."""

from __future__ import annotations

import html as htmllib
import re

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from qvd.db.models import VmSpyTicket
from qvd.db.spytickets import ticket_digest
from qvd.wat.csp import CSP, FormTargetError, csp_allowing_form_to, form_target_source
from tests.api.test_spy import admin_with
from tests.wat.conftest import Wat, csrf_of, set_vm_runtime


def _button(html: str, button_id: str) -> str | None:
    """The attributes of the submit button ``button_id`` (None: not on the page)."""
    match = re.search(rf'<button type="submit" id="{button_id}"([^>]*)>', html)
    return None if match is None else match.group(1)


def _running(engine: Engine, wat: Wat, label: str = "A") -> int:
    vm_id = wat.world.vms[label]
    set_vm_runtime(engine, vm_id, vm_state="running", vm_cmd=None, host_id=wat.world.host)
    return vm_id


def test_spy_buttons_follow_the_vm_state(wat: Wat, engine: Engine) -> None:
    wat.login()
    vm_id = wat.world.vms["A"]
    html = wat.client.get(f"/vms/{vm_id}").text
    for button in ("vm-spy", "vm-spy-interactive"):
        attrs = _button(html, button)
        assert attrs is not None, button
        assert "disabled" in attrs
        assert 'aria-describedby="vm-spy-why"' in attrs
    assert "Spying needs a running virtual machine." in html

    _running(engine, wat)
    html = wat.client.get(f"/vms/{vm_id}").text
    for button in ("vm-spy", "vm-spy-interactive"):
        attrs = _button(html, button)
        assert attrs is not None, button
        assert "disabled" not in attrs, button
    assert "vm-spy-why" not in html
    forms = re.findall(r'<form method="post" action="/vms/(\d+)/spy">', html)
    assert forms == [str(vm_id)] * 2
    assert '<input type="hidden" name="interactive" value="1">' in html

    set_vm_runtime(engine, vm_id, vm_cmd="stop")  # being stopped: no more
    html = wat.client.get(f"/vms/{vm_id}").text
    assert "disabled" in (_button(html, "vm-spy") or "")


def test_spy_buttons_follow_the_acls(wat: Wat, engine: Engine) -> None:
    vm_id = _running(engine, wat)
    admin_with(
        engine, wat.world, "watcher", ["vm.see-main.", "vm.see-details.", "vm.see.id", "vm.spy."]
    )
    admin_with(
        engine,
        wat.world,
        "reader",
        ["vm.see-main.", "vm.see-details.", "vm.see.id", "vm.see.state"],
    )
    wat.login("watcher", "tenantA")
    html = wat.client.get(f"/vms/{vm_id}").text
    assert _button(html, "vm-spy") is not None
    assert _button(html, "vm-spy-interactive") is None  # no vm.spy.interactive
    wat.client.post("/logout", data={"csrf": csrf_of(html)})
    wat.login("reader", "tenantA")
    html = wat.client.get(f"/vms/{vm_id}").text
    assert 'data-field="state" data-state="running"' in html
    assert _button(html, "vm-spy") is None
    assert "vm-spy" not in html


def test_the_launcher_posts_the_ticket_to_the_portal(wat: Wat, engine: Engine) -> None:
    vm_id = _running(engine, wat)
    csrf = wat.login("adminA", "tenantA")
    r = wat.client.post(f"/vms/{vm_id}/spy", data={"csrf": csrf, "interactive": "1"})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    form = re.search(r'<form method="post" action="([^"]+)" id="spy-open" ([^>]*)>', r.text)
    assert form, r.text
    assert form.group(1) == "https://node1.nodes.test:4433/spy"
    assert 'target="_blank"' in form.group(2)
    assert "data-autosubmit-form" in form.group(2)
    ticket = re.search(r'<input type="hidden" name="ticket" value="([^"]+)">', r.text)
    assert ticket
    value = htmllib.unescape(ticket.group(1))
    assert _button(r.text, "spy-open-button") is not None  # works without script
    # the ticket is the one stored (as its digest), interactive as asked, and in no URL
    with Session(engine) as s:
        [stored] = s.scalars(select(VmSpyTicket)).all()
    assert stored.token_sha256 == ticket_digest(value)
    assert (stored.vm_id, stored.interactive, stored.administrator_name) == (vm_id, True, "adminA")
    for url in re.findall(r'(?:href|action|src)="([^"]*)"', r.text):
        assert value not in url
    assert value not in str(r.url)
    assert value not in r.headers.get("location", "")
    # this page, and only this one, may post a form to that portal (that path only)
    policy = r.headers["content-security-policy"]
    assert "form-action 'self' https://node1.nodes.test:4433/spy;" in policy
    assert policy == csp_allowing_form_to("https://node1.nodes.test:4433/spy")
    assert policy.replace(" https://node1.nodes.test:4433/spy", "") == CSP
    for path in ("/", f"/vms/{vm_id}", "/vms", "/login"):
        other = wat.client.get(path).headers["content-security-policy"]
        assert other == CSP, path
        assert "form-action 'self';" in other


def test_a_view_only_spy_is_asked_without_interactive(wat: Wat, engine: Engine) -> None:
    vm_id = _running(engine, wat)
    admin_with(
        engine, wat.world, "watcher", ["vm.see-main.", "vm.see-details.", "vm.see.id", "vm.spy."]
    )
    csrf = wat.login("watcher", "tenantA")
    r = wat.client.post(f"/vms/{vm_id}/spy", data={"csrf": csrf})
    assert r.status_code == 200, r.text
    assert 'id="spy-open"' in r.text
    # asking for control by hand is refused with the API's reason
    r = wat.client.post(f"/vms/{vm_id}/spy", data={"csrf": csrf, "interactive": "1"})
    assert r.status_code == 403
    assert "vm.spy.interactive" in r.text
    assert 'id="spy-open"' not in r.text
    with Session(engine) as s:
        assert [t.interactive for t in s.scalars(select(VmSpyTicket))] == [False]


def test_refusals_show_the_apis_reason(wat: Wat, engine: Engine) -> None:
    csrf = wat.login("adminA", "tenantA")
    vm_id = wat.world.vms["A"]
    r = wat.client.post(f"/vms/{vm_id}/spy", data={"csrf": csrf})  # stopped
    assert r.status_code == 409
    assert "only a running VM can be spied" in r.text
    assert 'id="spy-open"' not in r.text
    other = _running(engine, wat, "B")
    r = wat.client.post(f"/vms/{other}/spy", data={"csrf": csrf})
    assert r.status_code == 404
    assert "vmB" not in r.text
    assert 'id="spy-open"' not in r.text
    # no anti-CSRF token, no ticket
    r = wat.client.post(f"/vms/{_running(engine, wat)}/spy", data={})
    assert r.status_code == 403
    with Session(engine) as s:
        assert s.scalars(select(VmSpyTicket)).all() == []


@pytest.mark.parametrize(
    "url",
    [
        "http://node1:4433/spy",
        "https://node1/spy",
        "https://node1:4433/spy?x=1",
        "https://u@node1:4433/spy",
        "https://node1:4433/spy; script-src *",
        "https://no'de:4433/spy",
        "https://node1:4433/sp y",
        "https://node1:99999/spy",
    ],
)
def test_only_a_plain_https_url_may_become_a_form_target(url: str) -> None:
    with pytest.raises(FormTargetError):
        form_target_source(url)


def test_form_targets() -> None:
    assert form_target_source("https://10.1.2.3:4433/spy") == "https://10.1.2.3:4433/spy"
    assert form_target_source("https://[fd00::7]:4433/spy") == "https:"
