"""The ACL editor in Chromium: create a role, inherit a built-in one, deny one ACL and
watch the effective result change, give the role to a new administrator, and log in as
that administrator to see the menu follow the ACLs."""

from __future__ import annotations

from pathlib import Path

from tests.wat.browser.conftest import BrowserPage, LiveWat, axe_violations, keep_screenshot, log_in


def test_build_a_role_give_it_to_a_new_admin_and_use_it(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    page = browser_page.page
    tenant_a = str(live_wat.world.tenants["A"])
    log_in(browser_page)

    browser_page.goto("/roles")
    page.click("a#create")  # the list's "New"
    page.wait_for_selector("form#create")
    page.fill("#f-name", "Helpdesk")
    page.select_option("#f-tenant_id", tenant_a)
    assert axe_violations(page) == []
    page.click("#create button[type=submit]")
    page.wait_for_selector("h1:text-is('Helpdesk')")
    assert page.locator("#effective tr[data-effective]").count() == 0

    page.select_option("#f-inherit", label="VMs Reader")
    page.click("#inherit")
    page.wait_for_selector("#inherited li a:text-is('VMs Reader')")
    ip_row = page.locator('#effective tr[data-acl="vm.see.ip"]')
    assert ip_row.get_attribute("data-effective") == "yes"
    assert "VMs Reader" in ip_row.inner_text()
    in_effect = page.locator("#effective tr[data-effective=yes]").count()
    assert in_effect > 10

    page.fill("#f-acl-filter", "vm see.ip")  # the filter narrows the ACL list
    visible = page.locator("#f-acl option:not([hidden])")
    assert visible.count() == 1
    page.select_option("#f-acl", "vm.see.ip")
    page.click("#acl-deny")
    page.wait_for_selector('#effective tr[data-acl="vm.see.ip"][data-effective="no"]')
    assert page.locator('#denied li[data-acl="vm.see.ip"]').count() == 1
    assert page.locator("#effective tr[data-effective=yes]").count() == in_effect - 1
    assert axe_violations(page) == []
    keep_screenshot(
        page, evidence_dir, "role-editor",
        ("Helpdesk", "Effective result", "VMs Reader", "vm.see.ip", "no: denied here"),
    )  # fmt: skip

    browser_page.goto("/administrators")
    page.click("a#create")
    page.wait_for_selector("form#create")
    page.fill("#f-name", "helper")
    page.fill("#f-password", "helper-pw-123")
    page.select_option("#f-tenant_id", tenant_a)
    page.click("#create button[type=submit]")
    page.wait_for_selector("h1:text-is('helper')")
    assert page.locator("#effective li[data-acl]").count() == 0
    page.select_option("#f-role", label="Helpdesk")
    page.click("#assign-role")
    page.wait_for_selector("#roles li a:text-is('Helpdesk')")
    assert page.locator('#effective li[data-acl="vm.see-main."]').count() == 1
    assert page.locator('#effective li[data-acl="vm.see.ip"]').count() == 0
    assert page.locator("#f-password").input_value() == ""
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "administrator", ("helper", "Helpdesk", "Effective ACLs"))

    page.click("#logout")
    page.wait_for_selector("#login-form")
    log_in(browser_page, "helper", "tenantA", "helper-pw-123")
    menu = page.inner_text("nav.menu")
    assert "Virtual machines" in menu
    for hidden in ("Users", "Roles", "Administrators", "Nodes"):
        assert hidden not in menu, hidden
    browser_page.goto("/vms")
    page.wait_for_selector("table#list tbody tr[data-id]")
    assert "vmA" in page.inner_text("table#list")
    assert "vmB" not in page.inner_text("table#list")
    page.click("#logout")  # closes the list's live socket before the server stops
    page.wait_for_selector("#login-form")


def test_the_lists_and_a_builtin_role(browser_page: BrowserPage) -> None:
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/administrators")
    page.wait_for_selector('table#list[data-object="administrator"] tbody tr[data-id]')
    assert "Root" in page.inner_text("table#list")
    assert axe_violations(page) == []
    browser_page.goto("/roles?q=Master")
    page.wait_for_selector('table#list[data-object="role"] tbody tr[data-id]')
    assert axe_violations(page) == []
    page.click("table#list a:text-is('Total Master')")
    page.wait_for_selector("#read-only")
    assert page.locator("#acl-form").count() == 0
    assert page.locator("#inherited li a:text-is('Master')").count() == 1
    assert axe_violations(page) == []


def test_the_acl_editor_works_with_the_keyboard(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto(f"/roles/{live_wat.world.roles['A']}")
    page.wait_for_selector("h1:text-is('roleA')")
    page.focus("#f-acl-filter")
    page.keyboard.type("user.see-main")
    page.keyboard.press("Tab")  # to the ACL list, narrowed to one option
    assert page.evaluate("document.activeElement.id") == "f-acl"
    page.keyboard.press("ArrowDown")
    assert page.locator("#f-acl").input_value() == "user.see-main."
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "acl-grant"
    page.keyboard.press("Enter")
    page.wait_for_selector('#effective tr[data-acl="user.see-main."][data-effective="yes"]')
    assert page.locator('#granted li[data-acl="user.see-main."]').count() == 1
