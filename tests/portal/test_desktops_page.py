"""The desktops page in real Chromium: the login form, rows that follow the database
without a reload, the Start button through the JSON API (with the page's anti-CSRF
token), logout; no console error (a CSP violation would be one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.portal.conftest import PASSWORD, HkdStandIn, PortalLab


@pytest.fixture
def page(chromium: Any, portal_lab: PortalLab) -> Iterator[Any]:
    context = chromium.new_context(ignore_https_errors=True)
    tab = context.new_page()
    tab.set_default_timeout(20000)
    errors: list[str] = []
    tab.on(
        "console",
        lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None,
    )
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
        assert errors == [], errors
    finally:
        context.close()


def test_the_desktops_page_follows_the_database(
    page: Any, portal_lab: PortalLab, hkd: HkdStandIn
) -> None:
    vm = portal_lab.seed.vm_id
    base = f"https://127.0.0.1:{portal_lab.port}"
    page.goto(base + "/")
    page.fill("form#login input[name=login]", "alice")
    page.fill("form#login input[name=password]", PASSWORD)
    page.click("form#login button[type=submit]")
    row = f'table#desktops tr[data-vm-id="{vm}"]'
    state = page.locator(f"{row} td[data-field=state]")
    state.wait_for()
    assert page.locator("table#desktops tr[data-vm-id]").count() == 1  # not bob's
    assert page.locator(f"{row} td[data-field=name]").inner_text() == "alice-desk"
    page.wait_for_function(
        "(sel) => document.querySelector(sel)?.textContent === 'stopped'",
        arg=f"{row} td[data-field=state]",
    )
    assert page.locator(f"{row} td[data-field=user_state]").inner_text() == "disconnected"
    page.click(f"{row} button[data-op=start]")
    page.wait_for_function(
        "(sel) => document.querySelector(sel)?.textContent === 'running'",
        arg=f"{row} td[data-field=state]",
    )
    assert (vm, "start") in hkd.seen
    # a change made elsewhere (another client, the WAT) shows without a reload
    with portal_lab.engine.begin() as conn:
        conn.execute(
            text("UPDATE vm_runtimes SET user_state = 'connected' WHERE vm_id = :v"), {"v": vm}
        )
    page.wait_for_function(
        "(sel) => document.querySelector(sel)?.textContent === 'connected'",
        arg=f"{row} td[data-field=user_state]",
    )
    assert page.locator(f"{row} button[data-op=start]").is_disabled()
    page.click("form#logout button[type=submit]")
    page.locator("form#login").wait_for()
    assert page.context.cookies() == [] or all(
        c["name"] != "qvd-portal" for c in page.context.cookies()
    )


def log_in(page: Any, portal_lab: PortalLab) -> str:
    """Log alice in; the selector of her desktop's row."""
    page.goto(f"https://127.0.0.1:{portal_lab.port}/")
    page.fill("form#login input[name=login]", "alice")
    page.fill("form#login input[name=password]", PASSWORD)
    page.click("form#login button[type=submit]")
    return f'table#desktops tr[data-vm-id="{portal_lab.seed.vm_id}"]'


def test_connect_works_before_the_pages_script_runs(page: Any, portal_lab: PortalLab) -> None:
    """The rows come with the page and Connect is a link: a user who clicks it at once
    (before desktops.js has loaded, here: never) reaches the session page."""
    held = "// held back by the test\n"
    for script in ("desktops.js", "session.js"):  # no script on either page
        page.route(
            f"**/static/js/{script}",
            lambda route: route.fulfill(status=200, content_type="text/javascript", body=held),
        )
    row = log_in(page, portal_lab)
    assert page.locator(f"{row} td[data-field=name]").inner_text() == "alice-desk"
    page.click(f"{row} a[data-op=connect]")
    page.wait_for_url(f"**/desktops/{portal_lab.seed.vm_id}")
    assert page.locator("#screen").get_attribute("data-vm-id") == str(portal_lab.seed.vm_id)


def test_a_desktop_blocked_meanwhile_loses_its_connect_link(
    page: Any, portal_lab: PortalLab
) -> None:
    vm = portal_lab.seed.vm_id
    row = log_in(page, portal_lab)
    link = f"{row} a[data-op=connect]"
    assert page.get_attribute(link, "href") == f"/desktops/{vm}"

    def block(blocked: bool) -> None:
        with portal_lab.engine.begin() as conn:
            conn.execute(
                text("UPDATE vm_runtimes SET blocked = :b WHERE vm_id = :v"),
                {"b": blocked, "v": vm},
            )

    block(True)
    page.wait_for_function(
        "(sel) => document.querySelector(sel)?.getAttribute('aria-disabled') === 'true'",
        arg=link,
    )
    assert page.get_attribute(link, "href") is None
    assert page.locator(f"{row} td[data-field=state]").inner_text() == "stopped (blocked)"
    block(False)
    page.wait_for_function("(sel) => document.querySelector(sel)?.hasAttribute('href')", arg=link)
    assert page.get_attribute(link, "aria-disabled") is None
