"""Cross-site WebSocket hijacking of ``/api/ws``, in real Chromium: a page of another
origin of the same site (HTTPS on another loopback port of 127.0.0.1, so the browser
sends the SameSite=Strict session cookie along) opens ``wss://…/api/ws`` with a read
action. The API refuses it (the socket closes with 4403 and no data), while the WAT's
own page, with the same cookie, gets the VM list.

Guard: ``qvd.api.shell.state.check_cookie_use`` (a cookie-authenticated WebSocket must
come from a page of this origin)."""

from __future__ import annotations

import json
from typing import Any

from tests.security.wat_attacker import ABORTED_ON_LEAVING, attacker_site
from tests.wat.browser import conftest as browser_fixtures
from tests.wat.browser.conftest import BrowserPage, LiveWat, log_in

live_wat = browser_fixtures.live_wat
browser_page = browser_fixtures.browser_page

OPEN = """
(url) => new Promise((resolve) => {
  const got = [];
  const socket = new WebSocket(url);
  socket.onmessage = (e) => {
    got.push(e.data);
    if (e.data.includes('"rows":[{')) socket.close();  // data came: enough
  };
  socket.onclose = (e) => resolve({code: e.code, got});
  setTimeout(() => { socket.close(); resolve({code: 'open', got}); }, 8000);
})
"""


def _listen_page() -> str:
    return "<!doctype html><html><body><p>attacker</p></body></html>"


def _vm_names(messages: list[str]) -> set[str]:
    names: set[str] = set()
    for text in messages:
        body: dict[str, Any] = json.loads(text) if text.startswith("{") else {}
        names |= {str(r.get("name")) for r in body.get("rows") or []}
    return names


def test_foreign_origin_websocket_is_refused(browser_page: BrowserPage, live_wat: LiveWat) -> None:
    bp, page = browser_page, browser_page.page
    bp.allow(ABORTED_ON_LEAVING)
    log_in(bp)
    url = live_wat.base.replace("https://", "wss://") + "/api/ws?action=vm_get_list"
    own: dict[str, Any] = page.evaluate(OPEN, url)
    assert {"vmA", "vmB"} <= _vm_names(own["got"]), own  # the WAT's page is served
    with attacker_site({"/": _listen_page()}, certs=live_wat.tmp) as evil:
        page.goto(evil.url("/"))
        page.wait_for_selector("text=attacker")
        stolen: dict[str, Any] = page.evaluate(OPEN, url)
    assert _vm_names(stolen["got"]) == set(), stolen
    assert stolen["code"] == 4403, stolen
    refusal = [json.loads(t) for t in stolen["got"] if t.startswith("{")]
    assert refusal
    assert refusal[0]["status"] == 4210
    assert "another site" in refusal[0]["message"]
