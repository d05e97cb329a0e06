"""The session page served by the real portal (attached to a real L7R, ``portal_lab`` of
``tests/portal/conftest.py``) in headless Chromium: from the desktops page's Connect to
the session page, whose viewer runs the connect flow over the portal's WebSocket (its
progress in the status line) with the geometry of the screen and the chosen keyboard
layout, all of noVNC served through the portal's allow-list under its CSP. With the
stand-in agent (no VNC) the page ends on the portal's reason and does not retry; with
the VMA's real ``vnc_connect`` (x11vnc on an Xvfb, as in ``tests/portal/
test_vnc_session.py``) the xterm shows in the canvas and takes keys. (In a real VM, on
an LXC node: ``tests/e2e``.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.di.testbed import Xvfb
from tests.conftest import end_process
from tests.l7r.test_vnc import X11vncService
from tests.portal.browser.test_viewer import YELLOW_PIXELS, wait_until
from tests.portal.conftest import PASSWORD, PortalLab, running_portal, wait_for
from tests.wat.browser.conftest import BrowserPage, open_page

pytestmark = pytest.mark.slow


@pytest.fixture
def portal_page(chromium: Browser, portal_lab: PortalLab) -> Iterator[BrowserPage]:
    with open_page(chromium, f"https://127.0.0.1:{portal_lab.port}") as bp:
        # Connect leaves the desktops list: its poll in flight then is cancelled
        bp.allow(r"/api/desktops net::ERR_ABORTED$")
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
    page.click(f"tr[data-vm-id='{vm}'] a[data-op=connect]")
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


@pytest.fixture
def vnc_page(
    chromium: Browser, db: DatabaseTarget, engine: Engine, tmp_path: Path
) -> Iterator[tuple[BrowserPage, PortalLab, Path]]:
    """The portal in front of the VMA's real vnc_connect (``x11vnc -inetd``, one-time
    password) on an Xvfb showing a yellow xterm whose shell runs in the returned folder."""
    for tool in ("Xvfb", "x11vnc", "xterm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/deps-portal.sh")
    display = Xvfb("1024x768x24")
    home = tmp_path / "home"
    home.mkdir()
    service = X11vncService(display.display, tmp_path)
    xterm = subprocess.Popen(
        ["xterm", "-geometry", "200x80+0+0", "-bg", "yellow", "-fg", "black", "-e", "sh"],
        cwd=home,
        env={**os.environ, "DISPLAY": display.display, "PS1": "$ ", "HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with (
            running_portal(db, engine, tmp_path, {}, vnc=service) as lab,
            open_page(chromium, f"https://127.0.0.1:{lab.port}") as bp,
        ):
            bp.allow(r"/api/desktops net::ERR_ABORTED$")  # a list poll cut by Connect
            yield bp, lab, home
    finally:
        end_process(xterm)
        for proc in service.started:
            end_process(proc)
        display.close()


def test_the_desktop_in_the_browser_through_the_portal(
    vnc_page: tuple[BrowserPage, PortalLab, Path],
) -> None:
    bp, lab, home = vnc_page
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    page = bp.page
    bp.goto("/")
    page.fill("#login-name", "alice")
    page.fill("#login-password", PASSWORD)
    page.click("#login button[type=submit]")
    page.click(f"tr[data-vm-id='{vm}'] a[data-op=connect]")
    page.wait_for_selector("#screen[data-state='connected']", timeout=30000)
    wait_until(lambda: page.evaluate(YELLOW_PIXELS) > 100000, "the xterm in the canvas")
    marker = home / f"marker-{uuid.uuid4().hex[:12]}"
    page.click("#screen canvas")
    page.keyboard.type(f"echo hi-from-browser > {marker.name}", delay=20)
    page.keyboard.press("Enter")
    wait_until(lambda: marker.exists() and marker.read_text() == "hi-from-browser\n", "the file")
    page.click("#disconnect")
    page.wait_for_selector("table#desktops")
    assert wait_for(lambda: not lab.core.sessions.holds(vm))
