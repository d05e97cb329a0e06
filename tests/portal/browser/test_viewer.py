"""The in-browser viewer (viewer.js, session.js, spy.js with noVNC) in headless Chromium
against a real x11vnc on a real Xvfb, behind the stand-in portal of ``harness.py``:
pixels, keys, clipboard both ways, view-only, reconnect after a drop, takeover, keyboard
layout, disconnect."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.portal.browser.harness import PROGRESS, TICKET, Desktop, Harness
from tests.wat.browser.conftest import BrowserPage, axe_violations

pytestmark = pytest.mark.slow

WAIT_MS = 20000

# Yellow pixels (the xterm's background) in noVNC's canvas. (Polled from Python:
# Playwright's wait_for_function polls with eval in the page, which the CSP forbids.)
YELLOW_PIXELS = """() => {
    const canvas = document.querySelector("#screen canvas");
    if (!canvas || !canvas.width) return 0;
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 0; i < data.length; i += 4) {
        if (data[i] > 200 && data[i + 1] > 200 && data[i + 2] < 80) count++;
    }
    return count;
}"""


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def wait_state(bp: BrowserPage, state: str) -> None:
    bp.page.wait_for_selector(f"#screen[data-state='{state}']", timeout=WAIT_MS)


def open_session(bp: BrowserPage, vm_id: int = 7) -> None:
    bp.goto(f"/desktops/{vm_id}")
    wait_state(bp, "connected")


def type_command(bp: BrowserPage, command: str) -> None:
    """Click into the desktop (focus) and type ``command`` and Enter."""
    bp.page.click("#screen canvas")
    bp.page.keyboard.type(command, delay=20)
    bp.page.keyboard.press("Enter")


def marker(desktop: Desktop) -> Path:
    return desktop.home / f"marker-{uuid.uuid4().hex[:12]}"


def test_session_page_shows_the_desktop(
    viewer_page: BrowserPage, harness: Harness, evidence_dir: Path
) -> None:
    before = len(harness.opened)
    open_session(viewer_page)
    page = viewer_page.page
    assert page.inner_text("#status") == "Connected"
    wait_until(lambda: page.evaluate(YELLOW_PIXELS) > 100000, "the xterm in the canvas")
    opened = harness.opened[before:]
    assert [o.path for o in opened] == ["/ws/desktops/7"]
    box = page.eval_on_selector("#screen", "e => e.getBoundingClientRect().toJSON()")
    assert opened[0].query == {
        "geometry": f"{round(box['width'])}x{round(box['height'])}",
        "keyboard": "us",
    }
    # The screen fills the window below the toolbar; the canvas is scaled into it.
    assert box["width"] == 1366
    assert 0 < box["top"] < 80
    assert box["top"] + box["height"] == 768
    canvas = page.eval_on_selector("#screen canvas", "e => e.getBoundingClientRect().toJSON()")
    assert canvas["width"] <= box["width"]
    assert canvas["height"] <= box["height"]
    folder = evidence_dir / "portal"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "viewer-session.png"))


def test_progress_frames_reach_the_status_line(viewer_page: BrowserPage, harness: Harness) -> None:
    page = viewer_page.page
    page.add_init_script(
        "window.__status = [];"
        "new MutationObserver(() => { const s = document.getElementById('status');"
        " if (s) window.__status.push(s.textContent); })"
        ".observe(document, {subtree: true, childList: true, characterData: true});"
    )
    open_session(viewer_page)
    seen = page.evaluate("window.__status")
    assert list(dict.fromkeys(t for t in seen if t in PROGRESS)) == list(PROGRESS)


def test_typing_reaches_the_xterm(viewer_page: BrowserPage, desktop: Desktop) -> None:
    open_session(viewer_page)
    path = marker(desktop)
    type_command(viewer_page, f"echo hi-from-browser > {path.name}")
    wait_until(lambda: path.exists() and path.read_text() == "hi-from-browser\n", f"{path}")


def test_clipboard_browser_to_desktop(viewer_page: BrowserPage, desktop: Desktop) -> None:
    open_session(viewer_page)
    page = viewer_page.page
    text = f"from the browser {uuid.uuid4().hex[:8]}"
    page.click(".session-clipboard summary")
    page.fill("#clipboard", text)
    page.click("#clipboard-send")
    wait_until(lambda: desktop.cut_text() == text, "the text in the X server")


def test_clipboard_desktop_to_browser(viewer_page: BrowserPage, desktop: Desktop) -> None:
    open_session(viewer_page)
    text = f"from the desktop {uuid.uuid4().hex[:8]}"
    desktop.set_cut_text(text)
    wait_until(lambda: viewer_page.page.input_value("#clipboard") == text, "the text in the page")


def test_spy_view_only_ignores_keys(
    viewer_page: BrowserPage, harness: Harness, desktop: Desktop
) -> None:
    before = len(harness.opened)
    viewer_page.goto("/spy-page?view_only=1")
    wait_state(viewer_page, "connected")
    spied = harness.opened[before:]
    # The ticket travels as the socket's first message, never in its URL.
    assert [(o.path, o.query, o.first_message) for o in spied] == [("/ws/spy", {}, TICKET)]
    # The ticket is spent: the page no longer holds it.
    assert viewer_page.page.get_attribute("#screen", "data-ticket") is None
    ignored = marker(desktop)
    type_command(viewer_page, f"echo spy > {ignored.name}")
    # The same keys from the user's own session do arrive: once they have, the spy's
    # (typed first) would have too.
    viewer_page.goto("/desktops/7")
    wait_state(viewer_page, "connected")
    typed = marker(desktop)
    type_command(viewer_page, f"echo user > {typed.name}")
    wait_until(typed.exists, f"{typed}")
    assert not ignored.exists()


def test_spy_interactive_types(viewer_page: BrowserPage, desktop: Desktop) -> None:
    viewer_page.goto("/spy-page?view_only=0")
    wait_state(viewer_page, "connected")
    path = marker(desktop)
    type_command(viewer_page, f"echo spy > {path.name}")
    wait_until(path.exists, f"{path}")


def test_spy_does_not_reconnect(viewer_page: BrowserPage, harness: Harness) -> None:
    before = len(harness.opened)
    viewer_page.goto("/spy-page?view_only=1")
    wait_state(viewer_page, "connected")
    assert harness.close_sockets(1011) == 1
    wait_state(viewer_page, "disconnected")
    viewer_page.page.wait_for_timeout(2000)  # four times the first retry delay
    assert len(harness.opened) == before + 1


def test_dropped_socket_reconnects(viewer_page: BrowserPage, harness: Harness) -> None:
    before = len(harness.opened)
    open_session(viewer_page)
    assert harness.close_sockets(1011) == 1
    wait_until(lambda: len(harness.opened) == before + 2, "a second socket")
    wait_state(viewer_page, "connected")
    wait_until(lambda: viewer_page.page.evaluate(YELLOW_PIXELS) > 100000, "the xterm in the canvas")
    assert viewer_page.page.locator("#screen canvas").count() == 1
    assert harness.opened[-1].query == harness.opened[before].query


def test_takeover_stops_without_reconnecting(viewer_page: BrowserPage, harness: Harness) -> None:
    before = len(harness.opened)
    open_session(viewer_page)
    assert harness.close_sockets(4409, "the desktop was taken over by qvd-client") == 1
    wait_state(viewer_page, "taken-over")
    status = viewer_page.page.inner_text("#status")
    assert status == "Taken over by another session: the desktop was taken over by qvd-client"
    viewer_page.page.wait_for_timeout(2000)  # four times the first retry delay
    assert len(harness.opened) == before + 1


def test_refusal_shows_the_reason(viewer_page: BrowserPage, harness: Harness) -> None:
    harness.refuse = (4503, "the desktop is blocked")
    before = len(harness.opened)
    viewer_page.goto("/desktops/7")
    wait_state(viewer_page, "error")
    assert viewer_page.page.inner_text("#status") == "Error: the desktop is blocked"
    viewer_page.page.wait_for_timeout(2000)  # four times the first retry delay
    assert len(harness.opened) == before + 1


def test_keyboard_change_reconnects_with_the_layout(
    viewer_page: BrowserPage, harness: Harness
) -> None:
    before = len(harness.opened)
    open_session(viewer_page)
    viewer_page.page.select_option("#keyboard", "es")
    wait_until(lambda: len(harness.opened) == before + 2, "a socket with the new layout")
    wait_state(viewer_page, "connected")
    first, second = harness.opened[before:]
    assert (first.query["keyboard"], second.query["keyboard"]) == ("us", "es")
    assert second.query["geometry"] == first.query["geometry"]
    assert viewer_page.page.locator("#screen canvas").count() == 1
    # The next session in this browser starts with the layout chosen.
    viewer_page.page.reload()
    wait_state(viewer_page, "connected")
    assert harness.opened[-1].query["keyboard"] == "es"
    assert viewer_page.page.input_value("#keyboard") == "es"


def test_disconnect_goes_back_to_the_desktops(viewer_page: BrowserPage, harness: Harness) -> None:
    before = len(harness.opened)
    open_session(viewer_page)
    viewer_page.page.click("#disconnect")
    viewer_page.page.wait_for_selector("#home")
    assert viewer_page.page.url == harness.base + "/"
    wait_until(lambda: not harness.live, "the socket's end on the server")
    assert len(harness.opened) == before + 1


def test_session_page_accessibility(viewer_page: BrowserPage) -> None:
    open_session(viewer_page)
    viewer_page.page.click(".session-clipboard summary")  # the panel open too
    assert axe_violations(viewer_page.page) == []
    for control in ("#keyboard", "#clipboard"):
        label = viewer_page.page.locator(f"label[for='{control[1:]}']")
        assert label.count() == 1
