"""The WAT in a real browser: logging in and out, the language switch."""

from __future__ import annotations

from pathlib import Path

from tests.wat.browser.conftest import BrowserPage, axe_violations, keep_screenshot, log_in


def test_log_in_see_the_vms_and_log_out(browser_page: BrowserPage, evidence_dir: Path) -> None:
    page = browser_page.page
    browser_page.goto("/vms")
    page.wait_for_selector("#login-form")
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "login", ("QVD administration", "Password"))
    log_in(browser_page)
    browser_page.goto("/vms")
    page.wait_for_selector("table#list tbody tr[data-id]")
    assert page.locator("table#list tbody tr[data-id]").count() == 2
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "vms", ("vmA", "vmB", "Virtual machines"))
    page.click("#logout")
    page.wait_for_selector("#login-form")
    browser_page.goto("/vms")
    page.wait_for_selector("#login-form")


def test_spanish_is_remembered_for_the_admin(browser_page: BrowserPage) -> None:
    page = browser_page.page
    log_in(browser_page)
    page.select_option("#language-choice", "es")
    page.wait_for_selector("html[lang=es]", state="attached")
    assert "Máquinas virtuales" in page.inner_text("nav")
    page.click("#logout")
    log_in(browser_page)  # a new session: the language comes from the administrator
    page.wait_for_selector("html[lang=es]", state="attached")
