"""VMs and users in a real browser: create a user, then a VM for them, start it and
watch its state change live (the test plays the node: it writes what the HKD would to
``vm_runtimes``), with axe-core clean pages and no console errors."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page
from sqlalchemy import update
from sqlalchemy.orm import Session

from qvd.db.models import VmRuntime
from tests.wat.browser.conftest import (
    BrowserPage,
    LiveWat,
    axe_violations,
    keep_screenshot,
    log_in,
)

LIVE_STATE = "#vm-live [data-field=state]"


def _set_state(live_wat: LiveWat, vm_id: int, **values: object) -> None:
    with Session(live_wat.engine) as s, s.begin():
        s.execute(update(VmRuntime).where(VmRuntime.vm_id == vm_id).values(**values))


def _wait_text(page: Page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([sel, want]) => { const el = document.querySelector(sel);"
        " return el !== null && el.textContent.trim() === want; }",
        arg=[selector, text],
        timeout=15000,
    )


def test_create_a_user_and_a_vm_start_it_and_see_it_run_live(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    page = browser_page.page
    log_in(browser_page)

    browser_page.goto("/users/new")
    page.wait_for_selector("form#create")
    assert axe_violations(page) == []
    page.select_option("#f-tenant_id", str(live_wat.world.tenants["A"]))
    page.fill("#f-name", "carol")
    page.fill("#f-password", "carol-pass-123")
    page.click("#create-save")
    page.wait_for_selector("h1:text-is('carol')")
    assert "carol-pass-123" not in page.content()
    assert axe_violations(page) == []

    page.click("#user-new-vm")
    page.wait_for_selector("form#create")
    assert page.locator("#f-user_id option:checked").inner_text() == "carol (tenantA)"
    assert axe_violations(page) == []
    page.fill("#f-name", "desk-carol")
    page.select_option("#f-osf_id", str(live_wat.world.osfs["A"]))
    page.click("#create-save")
    page.wait_for_selector("h1:text-is('desk-carol')")
    vm_id = int(page.locator("#vm-live [data-id]").get_attribute("data-id") or "0")
    assert vm_id > 0
    assert page.locator("#vm-spy").is_disabled()
    assert page.locator("#vm-spy").get_attribute("aria-disabled") == "true"
    assert axe_violations(page) == []

    page.click("#vm-start")
    page.wait_for_selector("text=Start requested")
    page.wait_for_selector("#vm-live[data-live=open]", state="attached")
    assert page.locator(LIVE_STATE).inner_text() == "stopped"
    assert page.locator("#vm-cmd-live [data-field=vm_cmd]").inner_text() == "start"
    page.evaluate("() => { window.qvdSamePage = true; }")  # gone if the page reloads

    _set_state(live_wat, vm_id, vm_state="starting", vm_cmd=None)
    _wait_text(page, LIVE_STATE, "starting")
    _wait_text(page, "#vm-cmd-live [data-field=vm_cmd]", "")  # the node took the command
    assert page.locator("#vm-live [data-field=host_name]").inner_text() == "node1"
    _set_state(live_wat, vm_id, vm_state="running", user_state="connected")
    _wait_text(page, LIVE_STATE, "running")
    _wait_text(page, "#vm-live [data-field=user_state]", "connected")
    assert page.evaluate("() => window.qvdSamePage === true")
    assert page.locator(LIVE_STATE).get_attribute("data-state") == "running"
    keep_screenshot(page, evidence_dir, "vm-running", ("desk-carol", "running", "carol"))

    # the user's page lists the VM with its live state
    page.click("#vm-live ~ dl.details a:text-is('carol')")
    page.wait_for_selector("#user-vms[data-live=open]", state="attached")
    row = page.locator(f"#user-vms tr[data-id='{vm_id}']")
    assert row.locator("[data-field=state]").inner_text() == "running"
    _set_state(live_wat, vm_id, vm_state="stopping")
    _wait_text(page, f"#user-vms tr[data-id='{vm_id}'] [data-field=state]", "stopping")
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "user", ("carol", "desk-carol", "stopping"))


def test_a_tenant_admin_blocks_edits_and_deletes_a_vm(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    page = browser_page.page
    log_in(browser_page, "adminA", "tenantA")
    vm_id = live_wat.world.vms["A"]
    browser_page.goto(f"/vms/{vm_id}")
    page.wait_for_selector("h1:text-is('vmA')")
    page.click("#vm-block")
    page.wait_for_selector("#vm-unblock")
    assert page.locator("#vm-live [data-field=blocked]").inner_text() == "✔"
    page.select_option("#f-di_tag", "head")
    page.fill("#f-expiration_soft", "2031-05-06T07:08")
    page.click("#edit-save")
    page.wait_for_selector("text=Changes saved.")
    assert "2031-05-06 07:08:00 UTC" in page.inner_text("dl.details:not(.live)")
    assert page.locator("#f-di_tag option:checked").inner_text() == "head"
    # another tenant's VM by URL: not found
    browser_page.allow(r"status of 404")
    browser_page.goto(f"/vms/{live_wat.world.vms['B']}")
    page.wait_for_selector("#not-found")
    assert "vmB" not in page.content()
    # delete asks first; dismissing keeps the VM
    browser_page.goto(f"/vms/{vm_id}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#vm-delete")
    page.wait_for_timeout(300)  # a dismissed confirm submits nothing
    assert page.url.endswith(f"/vms/{vm_id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#vm-delete")
    page.wait_for_url("**/vms")
    page.wait_for_selector("table#list")
    assert page.locator(f"table#list tr[data-id='{vm_id}']").count() == 0
