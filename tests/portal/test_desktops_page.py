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
