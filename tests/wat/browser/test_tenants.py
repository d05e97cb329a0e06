"""The tenants area in a real browser: create and block a tenant, edit a configuration
token (saved; a wrong type refused with the API's message), filter the audit log; axe
finds no serious violation on any of these pages."""

from __future__ import annotations

import re
from pathlib import Path

from tests.wat.browser.conftest import BrowserPage, axe_violations, keep_screenshot, log_in

ABORTED_ON_LEAVING = r"^requestfailed: \S+/static/favicon\.svg net::ERR_ABORTED"
"""A page left while its icon loads: the browser drops that request (harmless)."""


def test_create_a_tenant_and_block_it(browser_page: BrowserPage, evidence_dir: Path) -> None:
    bp, page = browser_page, browser_page.page
    bp.allow(ABORTED_ON_LEAVING)
    log_in(bp)
    bp.goto("/tenants")
    page.wait_for_selector("table#list[data-object=tenant] tr[data-id]")
    assert axe_violations(page) == []
    bp.goto("/tenants/new")
    assert axe_violations(page) == []
    page.fill("#create #f-name", "acme")
    page.select_option("#create #f-language", "es")
    page.fill("#create #f-block", "20")
    page.click("#create button[type=submit]")
    page.wait_for_selector("h1:has-text('acme')")
    assert re.search(r"/tenants/\d+$", page.url)
    assert page.inner_text("[data-count=users]") == "0"
    assert axe_violations(page) == []
    page.check("#edit #f-blocked")
    page.click("#save")
    page.wait_for_load_state("load")
    assert page.is_checked("#edit #f-blocked")
    keep_screenshot(page, evidence_dir, "tenant", ("acme", "WAT settings", "What it holds"))
    bp.goto("/tenants?q=acme")
    row = page.locator("table#list tr[data-id]")
    assert row.count() == 1
    assert row.locator("td[data-field=blocked]").inner_text().strip() == "✔"


def test_edit_a_configuration_token(browser_page: BrowserPage, evidence_dir: Path) -> None:
    bp, page = browser_page, browser_page.page
    bp.allow(ABORTED_ON_LEAVING)
    bp.allow(r"status of 400")  # the refused value's page answers 400
    log_in(bp)
    bp.goto("/configs")
    page.wait_for_selector("table#list[data-object=config]")
    assert axe_violations(page) == []
    page.fill("#search", "client.host.port")
    page.press("#search", "Enter")
    page.wait_for_url("**/configs?*q=client.host.port*")
    assert page.locator("table#list tr[data-id]").count() == 1
    page.click("table#list tr[data-id='client.host.port'] a")
    page.wait_for_selector("#config-edit")
    assert axe_violations(page) == []
    page.fill("#f-value", "not a port")
    page.click("#config-save")
    page.wait_for_selector(".flash.error")
    assert "is not an integer" in page.inner_text(".flash.error")
    assert page.input_value("#f-value") == "not a port"
    page.fill("#f-value", "9443")
    page.click("#config-save")
    page.wait_for_selector(".flash.ok")
    assert page.input_value("#f-value") == "9443"
    keep_screenshot(page, evidence_dir, "config-token", ("client.host.port", "9443", "Saved."))
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#config-reset-button")
    page.wait_for_selector(".flash.ok:has-text('Reset to its default.')")
    assert page.input_value("#f-value") == ""


def test_filter_the_audit_log(browser_page: BrowserPage) -> None:
    bp, page = browser_page, browser_page.page
    bp.allow(ABORTED_ON_LEAVING)
    bp.allow(r"status of 409")  # the refused tenant's page answers 409
    log_in(bp)
    bp.goto("/tenants/new")
    page.fill("#create #f-name", "tenantA")  # refused: it exists (a failed entry)
    page.click("#create button[type=submit]")
    page.wait_for_selector(".flash.error")
    bp.goto("/logs")
    page.wait_for_selector("table#list[data-object=log] tr[data-id]")
    assert axe_violations(page) == []
    page.select_option("#log-status", "failed")
    page.wait_for_url("**/logs?*status=failed*")
    page.wait_for_selector("table#list td[data-field=status].failed")
    statuses = page.locator("table#list td[data-field=status]").all_inner_texts()
    assert statuses
    assert all(s.strip() != "ok" for s in statuses)
    page.locator("table#list td[data-field=time] a").first.click()
    page.wait_for_selector("#log-arguments")
    assert "tenantA" in page.inner_text("#log-arguments")
    assert axe_violations(page) == []
