"""HTML injection through the dashboard's live panels: a VM's name and its last error
(written by a node from what failed, partly from the image) are data. When a panel's
rows change the browser fetches it again and puts it in place; it must arrive as
text, never as markup (Jinja autoescaping, no ``|safe``). Fails if the panel
templates ever mark them safe: the payload would become an <img> element in the page."""

from __future__ import annotations

from sqlalchemy import text

from tests.wat.browser import conftest as browser_fixtures
from tests.wat.browser.conftest import BrowserPage, LiveWat, log_in

live_wat = browser_fixtures.live_wat  # the browser fixtures (chromium comes from tests/conftest)
browser_page = browser_fixtures.browser_page

PAYLOAD = '<img src="/static/favicon.svg" id="injected" alt="x"><b>bold</b>'
NAME = "<b id=bold>vm</b>"  # names are at most 64 characters


def test_a_live_panel_shows_names_and_errors_as_text(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/")
    page.wait_for_selector("#panel-vm-errors[data-live=open]")
    vm = live_wat.world.vms["A"]
    with live_wat.engine.begin() as conn:
        conn.execute(text("UPDATE vms SET name = :p WHERE id = :vm"), {"p": NAME, "vm": vm})
        conn.execute(
            text("UPDATE vm_runtimes SET vm_state = 'zombie', last_error = :p WHERE vm_id = :vm"),
            {"p": PAYLOAD, "vm": vm},
        )
    cell = f"#panel-vm-errors tr[data-id='{vm}'] td[data-field=last_error]"
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.textContent === t",
        arg=[cell, PAYLOAD],
        timeout=10000,
    )
    name = page.inner_text(f"#panel-vm-errors tr[data-id='{vm}'] td[data-field=name]")
    assert name == NAME
    assert page.locator("#injected").count() == 0
    assert page.locator("#panel-vm-errors b").count() == 0
