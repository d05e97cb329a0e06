"""Live updates in a real browser: the dashboard's numbers and panels and a VM list's
cells change within seconds of the database changing, without a reload; a socket the
server closes comes back by itself; an htmx swap replaces a list's socket without
leaking the old one; no console errors (the fixture fails the test on any)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.wat.browser.conftest import (
    BrowserPage,
    LiveWat,
    axe_violations,
    keep_screenshot,
    log_in,
)

LIVE_WAIT_MS = 8000  # generous: the API pushes within a second of the NOTIFY


def _sql(live: LiveWat, statement: str, **values: Any) -> None:
    with live.engine.begin() as conn:
        conn.execute(text(statement), values)


def _wait_text(page: Any, selector: str, expected: str) -> None:
    """Wait until the element's text is ``expected`` (a function, not a string to
    evaluate: the page's CSP forbids eval)."""
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.textContent.trim() === t",
        arg=[selector, expected],
        timeout=LIVE_WAIT_MS,
    )


def _mark_page(bp: BrowserPage) -> None:
    """A value that survives only as long as the document does (no reload)."""
    bp.page.evaluate("window.qvdNoReload = 'still here'")


def _not_reloaded(bp: BrowserPage) -> bool:
    return bool(bp.page.evaluate("window.qvdNoReload === 'still here'"))


def test_the_dashboard_follows_the_database(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/")
    page.wait_for_selector("#dashboard[data-live=open]")
    page.wait_for_selector("#panel-nodes[data-live=open]")
    assert page.inner_text("#count-vms-running output") == "0"
    assert page.inner_text("#count-vms-stopped output") == "2"
    assert axe_violations(page) == []
    _mark_page(browser_page)

    world = live_wat.world
    _sql(
        live_wat,
        "UPDATE vm_runtimes SET vm_state = 'running', host_id = :host, blocked = true "
        "WHERE vm_id = :vm",
        host=world.host, vm=world.vms["A"],
    )  # fmt: skip
    _wait_text(page, "#count-vms-running output", "1")
    _wait_text(page, "#count-vms-stopped output", "1")
    _wait_text(page, "#count-blocked-vms output", "1")
    # the nodes panel is rendered again by the WAT when its rows change
    cell = f"#panel-nodes tr[data-id='{world.host}'] td[data-field=number_of_vms]"
    _wait_text(page, cell, "1")
    # a failed start reaches the VMs-with-errors panel (the node writes the error with
    # the state, as the HKD does)
    page.wait_for_selector("#panel-vm-errors[data-live=open]")
    _sql(
        live_wat,
        "UPDATE vm_runtimes SET vm_state = 'stopped', host_id = NULL, "
        "last_error = 'no space left for the overlay' WHERE vm_id = :vm",
        vm=world.vms["A"],
    )
    _wait_text(page, "#panel-vm-errors td[data-field=last_error]", "no space left for the overlay")
    _wait_text(page, "#count-vms-running output", "0")
    assert _not_reloaded(browser_page)
    keep_screenshot(
        page, evidence_dir, "dashboard", ("Virtual machines by state", "node1", "no space left")
    )


def test_a_vm_list_cell_follows_the_database(browser_page: BrowserPage, live_wat: LiveWat) -> None:
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/vms")
    page.wait_for_selector("table#list[data-live=open]")
    _mark_page(browser_page)
    vm = live_wat.world.vms["B"]
    _sql(
        live_wat,
        "UPDATE vm_runtimes SET vm_state = 'starting', blocked = true WHERE vm_id = :vm",
        vm=vm,
    )
    state = f"table#list tr[data-id='{vm}'] td[data-field=state]"
    _wait_text(page, state, "starting")
    assert page.get_attribute(state, "data-state") == "starting"
    blocked = f"table#list tr[data-id='{vm}'] td[data-field=blocked]"
    # /api/ws says 1 (QVD's boolean): shown as the list shows true
    _wait_text(page, blocked, "✔")
    assert _not_reloaded(browser_page)


class _Sockets:
    """The page's /api/ws sockets, routed through Playwright to the real server (so a
    test can close one from the server's side)."""

    def __init__(self) -> None:
        self.routes: list[Any] = []  # (page side, server side)
        self.page_closed: set[int] = set()

    def handler(self, ws: Any) -> None:
        server = ws.connect_to_server()
        index = len(self.routes)
        self.routes.append((ws, server))
        ws.on_close(lambda code, reason: self._closed(index, server, code, reason))

    def _closed(self, index: int, server: Any, code: Any, reason: Any) -> None:
        if index not in self.page_closed:
            self.page_closed.add(index)
            server.close(code=code, reason=reason)

    def open_count(self) -> int:
        return len(self.routes) - len(self.page_closed)


def test_sockets_are_replaced_on_swaps_and_come_back_after_a_server_close(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    page = browser_page.page
    sockets = _Sockets()
    log_in(browser_page)  # (lands on the dashboard, whose sockets are not routed)
    page.route_web_socket(re.compile(r"/api/ws\?"), sockets.handler)
    browser_page.goto("/vms")
    page.wait_for_selector("table#list[data-live=open]")
    assert _wait(page, lambda: sockets.open_count() == 1), sockets.open_count()
    assert len(sockets.routes) == 1  # wired on load and by htmx: one socket
    _mark_page(browser_page)

    # an htmx swap (sorting) brings a new table: its socket replaces the old one
    page.click("table#list th[data-field=name] a")
    page.wait_for_selector("table#list th[data-field=name][aria-sort]")
    page.wait_for_selector("table#list[data-live=open]")
    swapped = _wait(page, lambda: sockets.open_count() == 1 and len(sockets.routes) == 2)
    assert swapped, (len(sockets.routes), sockets.page_closed)

    # the server closes the socket (as an API restart would): the page reconnects
    page_side, server = sockets.routes[-1]
    server.close(code=1000)
    page_side.close(code=1012, reason="service restart")  # what the page sees
    page.wait_for_selector("table#list[data-live-reconnects='1'][data-live=open]")
    vm = live_wat.world.vms["A"]
    _sql(live_wat, "UPDATE vm_runtimes SET vm_state = 'stopping' WHERE vm_id = :vm", vm=vm)
    state = f"table#list tr[data-id='{vm}'] td[data-field=state]"
    _wait_text(page, state, "stopping")
    assert _not_reloaded(browser_page)


def _wait(page: Any, check: Any, seconds: float = 5.0) -> bool:
    """Wait for ``check()`` while Playwright dispatches its events (route handlers run
    only inside Playwright calls)."""
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        page.wait_for_timeout(50)
    return bool(check())


def test_an_ended_session_closes_the_socket_for_good(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/vms")
    page.wait_for_selector("table#list[data-live=open]")
    _sql(live_wat, "DELETE FROM api_sessions")  # logged out elsewhere, or expired
    # the next run (any change) finds no session: the API closes the socket with 4401
    _sql(
        live_wat,
        "UPDATE vm_runtimes SET vm_state = 'starting' WHERE vm_id = :vm",
        vm=live_wat.world.vms["A"],
    )
    page.wait_for_selector("table#list[data-live=closed]", state="attached")
    page.wait_for_timeout(3000)  # longer than the first reconnection delay (0.25-0.5 s)
    assert page.get_attribute("table#list", "data-live-reconnects") is None
    assert page.get_attribute("table#list", "data-live") == "closed"


def test_back_to_a_list_follows_again(browser_page: BrowserPage, live_wat: LiveWat) -> None:
    """Leaving a page closes its sockets; coming back (from the browser's page cache
    or by loading it again) follows the database again."""
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/vms")
    page.wait_for_selector("table#list[data-live=open]")
    browser_page.goto("/users")
    page.wait_for_selector("table#list[data-object=user]")
    page.wait_for_load_state("load")
    # leaving quickly may cut the favicon's request short (the browser's, not the WAT's)
    browser_page.allow(r"favicon\.svg net::ERR_ABORTED")
    page.go_back()
    page.wait_for_selector("table#list[data-live=open]")
    vm = live_wat.world.vms["B"]
    _sql(live_wat, "UPDATE vm_runtimes SET vm_state = 'zombie' WHERE vm_id = :vm", vm=vm)
    _wait_text(page, f"table#list tr[data-id='{vm}'] td[data-field=state]", "zombie")
