"""The session page served by the real portal (attached to a real L7R, ``portal_lab`` of
``tests/portal/conftest.py``) in headless Chromium: from the desktops page's Connect to
the session page, whose viewer runs the connect flow over the portal's WebSocket (its
progress in the status line) with the geometry of the screen and the chosen keyboard
layout, all of noVNC served through the portal's allow-list under its CSP. The stand-in
agent there serves no VNC: the page ends on the portal's reason, and does not retry
(the RFB part is tested against x11vnc in ``test_viewer.py`` and end to end in
``tests/e2e``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The portal server is the portal engineer's branch: until it is merged this module has
# nothing to run against.
pytest.importorskip("qvd.portal.server", reason="the portal server is not in this tree")

from playwright.sync_api import Browser

from tests.portal.conftest import PASSWORD, PortalLab
from tests.wat.browser.conftest import BrowserPage, open_page

pytestmark = pytest.mark.slow


@pytest.fixture
def portal_page(chromium: Browser, portal_lab: PortalLab) -> Iterator[BrowserPage]:
    with open_page(chromium, f"https://127.0.0.1:{portal_lab.port}") as bp:
        yield bp


def test_connect_opens_the_session_page(portal_page: BrowserPage, portal_lab: PortalLab) -> None:
    vm = portal_lab.seed.vm_id
    portal_lab.run_vm(vm)
    page = portal_page.page
    page.add_init_script(
        "window.__status = [];"
        "new MutationObserver(() => { const s = document.getElementById('status');"
        " if (s) window.__status.push(s.textContent); })"
        ".observe(document, {subtree: true, childList: true, characterData: true});"
    )
    portal_page.goto("/")
    page.fill("#login-name", "alice")
    page.fill("#login-password", PASSWORD)
    page.click("#login button[type=submit]")
    page.click(f"tr[data-vm-id='{vm}'] button[data-op=connect]")
    page.wait_for_url(f"**/desktops/{vm}")
    page.wait_for_selector("#screen[data-state='error']", timeout=30000)
    seen = page.evaluate("window.__status")
    assert f"Session acquired for VM_ID: {vm}" in seen, seen
    assert page.inner_text("#status").startswith("Error: ")
    # The agent was asked for the session with the screen's size and the layout.
    box = page.eval_on_selector("#screen", "e => e.getBoundingClientRect().toJSON()")
    started = portal_lab.agent.starts[-1]
    assert started["geometry"] == f"{round(box['width'])}x{round(box['height'])}"
    assert started["keyboard"] == "pc105/us"
    # The portal's header gave way to the session's toolbar; the screen fills the rest.
    assert not page.is_visible("header.top")
    assert box["top"] + box["height"] == 768
    # An error is final: no second connect.
    page.wait_for_timeout(2000)  # four times the first retry delay
    assert len(portal_lab.agent.starts) == 1
