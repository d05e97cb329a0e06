"""What the user portal's real-node tests share (tests/e2e/test_portal.py): an LXC node
whose HKD hosts the L7R with the portal attached, a Chromium page logged in to the
portal, and the desktop as the browser shows it (the pixels of noVNC's canvas).

The portal listens on the node's own address on its bridge (``hosts.address``): the
spy URL the API hands out (``https://<host address>:<l7r.portal.port>/spy``) is then
one the browser can open as it is, and no traffic leaves the machine (the bridge is
the node's own, made by its HKD before the L7R starts)."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.di.screenshot import Screenshot
from qvd.hkd.daemon import Hkd
from qvd.node.daemons import node_services
from tests.conftest import free_port
from tests.hkd.conftest import add_host
from tests.hkd.lxcnode import LxcNode
from tests.vma.helpers import xterm_visible
from tests.wat.browser.conftest import BrowserPage, open_page

__all__ = [
    "SOCKET_PROBE",
    "PortalNode",
    "canvas_shot",
    "close_codes",
    "drop_portal_sockets",
    "landed",
    "log_in_portal",
    "open_desktop",
    "portal_node",
    "portal_page",
    "row_cell",
    "status_text",
    "type_in_xterm",
    "wait_canvas",
    "wait_cell",
    "wait_close_code",
]

START_TIMEOUT = 180.0  # s: an LXC desktop's cold start (a DI unpacked the first time)


def landed(*modules: str) -> list[str]:
    """Which of ``modules`` cannot be imported yet (the issue's parts land one by one)."""

    def missing(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except ModuleNotFoundError:  # its package is missing too
            return True

    return [m for m in modules if missing(m)]


# ---- the node ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PortalNode:
    hkd: Hkd
    lxc: LxcNode
    portal_port: int

    @property
    def l7r_port(self) -> int:
        """The NX clients' door (``l7r.port``), on 127.0.0.1."""
        return int(self.hkd.services[0].port)  # type: ignore[attr-defined]

    @property
    def base(self) -> str:
        """The portal's URL (the browser's door)."""
        return f"https://{self.lxc.host_address}:{self.portal_port}"


def portal_config_values(lxc: LxcNode, portal_port: int) -> dict[str, str]:
    """The settings that put the L7R on loopback and the portal on the node's address."""
    return {
        "l7r.address": "127.0.0.1",
        "l7r.port": "0",
        "l7r.portal.enable": "1",
        "l7r.portal.address": lxc.host_address,
        "l7r.portal.port": str(portal_port),
    }


@pytest.fixture
def portal_node(db: DatabaseTarget, engine: Engine, lxc_node: LxcNode) -> Iterator[PortalNode]:
    """The LXC node's HKD, its L7R on a free loopback port and the user portal (attached
    to the L7R by ``node_services``) on a free port of the node's address."""
    add_host(engine, lxc_node.name, lxc_node.host_address)
    port = free_port()
    config = lxc_node.config(**portal_config_values(lxc_node, port))
    hkd = Hkd(config, target=db, services=node_services(config, db))
    hkd.start()
    try:
        attached = getattr(hkd.services[0], "attached", [])
        assert attached, "node_services did not attach the portal to the L7R"
        yield PortalNode(hkd=hkd, lxc=lxc_node, portal_port=port)
    finally:
        hkd.stop()


# ---- the browser ------------------------------------------------------------------------
# Every WebSocket the page opens, and how each one closed (code, reason), recorded by an
# init script (run through DevTools: the page's CSP does not govern it). The sockets stay
# native ones (not a subclass): noVNC checks a socket's methods on its own prototype.
SOCKET_PROBE = """(() => {
  const Native = window.WebSocket;
  window.__qvdSockets = [];
  window.__qvdCloses = [];
  function Recorded(...args) {
    const ws = new Native(...args);
    window.__qvdSockets.push(ws);
    ws.addEventListener("close", (e) => {
      window.__qvdCloses.push({url: ws.url, code: e.code, reason: e.reason});
    });
    return ws;
  }
  Recorded.prototype = Native.prototype;
  for (const name of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) {
    Object.defineProperty(Recorded, name, {value: Native[name]});
  }
  window.WebSocket = Recorded;
})();"""


@contextlib.contextmanager
def portal_page(chromium: Browser, node: PortalNode) -> Iterator[BrowserPage]:
    """A fresh browser context on the portal (no cookies, its WebSockets recorded);
    fails on exit on console errors or failed requests the test did not allow."""
    with open_page(chromium, node.base) as bp:
        bp.allow(r"/favicon\.ico\]$")  # the portal has no icon: Chromium asks anyway
        # the node's bridge and the desktops' veths come and go under Chromium, which
        # cuts a request in flight when the host's interfaces change (not the portal)
        bp.allow(r"net::ERR_NETWORK_CHANGED$")
        # Connect navigates away from the desktops list: a poll of it in flight then is
        # cancelled by the browser (not a failure of the portal)
        bp.allow(r"/api/desktops net::ERR_ABORTED$")
        bp.page.context.add_init_script(SOCKET_PROBE)
        bp.page.set_default_timeout(30_000)
        yield bp


def log_in_portal(bp: BrowserPage, login: str, password: str) -> None:
    """Log in through ``form#login`` and wait for the desktops' table."""
    bp.goto("/")
    form = bp.page.locator("form#login")
    form.locator("[name=login]").fill(login)
    form.locator("[name=password]").fill(password)
    with bp.page.expect_navigation():
        form.locator("[type=submit]").click()
    bp.page.wait_for_selector("table#desktops")


def row_cell(vm_id: int, field: str) -> str:
    return f'table#desktops tr[data-vm-id="{vm_id}"] td[data-field="{field}"]'


def wait_cell(page: Page, vm_id: int, field: str, wanted: str, timeout: float) -> None:
    """Wait until the desktops' table shows ``wanted`` in the VM's ``field`` cell."""
    page.wait_for_function(
        "([sel, wanted]) => document.querySelector(sel)?.textContent.trim() === wanted",
        arg=[row_cell(vm_id, field), wanted], timeout=timeout * 1000,
    )  # fmt: skip


def open_desktop(bp: BrowserPage, vm_id: int) -> Page:
    """Click the VM's Connect button; the page that shows its session (a new tab or the
    same one, whichever the portal does), once its ``#screen`` is there."""
    context: BrowserContext = bp.page.context
    before = list(context.pages)
    bp.page.click(f'table#desktops tr[data-vm-id="{vm_id}"] a[data-op="connect"]')
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        opened = [p for p in context.pages if p not in before]
        for page in [*opened, bp.page]:
            if f"/desktops/{vm_id}" in page.url:
                page.wait_for_selector("#screen")
                page.set_default_timeout(30_000)
                return page
        bp.page.wait_for_timeout(100)
    raise AssertionError(
        f"Connect did not open /desktops/{vm_id}: {[p.url for p in context.pages]}"
    )


def status_text(page: Page) -> str:
    return str(page.evaluate("() => document.querySelector('#status')?.textContent ?? ''"))


def close_codes(page: Page) -> list[dict[str, Any]]:
    """How the page's WebSockets closed so far ({url, code, reason}, in order)."""
    closes: list[dict[str, Any]] = page.evaluate("() => window.__qvdCloses ?? []")
    return closes


def wait_close_code(page: Page, code: int, timeout: float = 60) -> dict[str, Any]:
    """Wait until one of the page's WebSockets closed with ``code``; that close."""
    page.wait_for_function(
        "(code) => (window.__qvdCloses ?? []).some(c => c.code === code)",
        arg=code, timeout=timeout * 1000,
    )  # fmt: skip
    return next(c for c in close_codes(page) if c["code"] == code)


def drop_portal_sockets(node: PortalNode) -> str:
    """Cut every TCP connection the browser holds to the portal (a dropped network: the
    page sees its WebSocket close abnormally, 1006). ``ss -K`` kills this machine's
    sockets whose destination is the portal's address and port; nothing else."""
    done = subprocess.run(
        ["ss", "-K", "-t", "dst", node.lxc.host_address, "dport", "=", f":{node.portal_port}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


# ---- the desktop on the canvas ------------------------------------------------------------
# The canvas noVNC draws the framebuffer on, read back as RGB (base64): the desktop's
# own pixels whatever the page's scale.
CANVAS_RGB = """() => {
  const canvas = document.querySelector('#screen canvas');
  if (!canvas || !canvas.width || !canvas.height) return null;
  const rgba = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const rgb = new Uint8Array(canvas.width * canvas.height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
  }
  let text = '';
  for (let i = 0; i < rgb.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, rgb.subarray(i, i + 0x8000));
  }
  return {width: canvas.width, height: canvas.height, rgb: btoa(text)};
}"""


def canvas_shot(page: Page) -> Screenshot | None:
    """What noVNC's canvas shows now (None before it has a framebuffer)."""
    found: dict[str, Any] | None = page.evaluate(CANVAS_RGB)
    if found is None:
        return None
    return Screenshot(
        width=int(found["width"]), height=int(found["height"]), rgb=base64.b64decode(found["rgb"])
    )


def wait_canvas(page: Page, timeout: float = 60) -> Screenshot:
    """Screenshots of the canvas until one shows the xterm (white, with text on it);
    the last one taken (the caller asserts on it, with the page's status)."""
    deadline = time.monotonic() + timeout
    shot = canvas_shot(page)
    while (shot is None or not xterm_visible(shot)) and time.monotonic() < deadline:
        if any(4000 <= c["code"] < 5000 for c in close_codes(page)):
            break  # refused (4403, 4404, 4409, 4503): the viewer does not try again
        page.wait_for_timeout(200)
        shot = canvas_shot(page)
    return shot if shot is not None else Screenshot(width=0, height=0, rgb=b"")


def type_in_xterm(page: Page, shot: Screenshot, text: str) -> None:
    """Point at the middle of the xterm the canvas shows (nxagent's focus follows the
    pointer), click there (noVNC takes the keyboard), and type ``text`` (``\\n``:
    Enter) as key presses."""
    box = shot.bright_box()
    assert box is not None, "no xterm on the canvas"
    rect: dict[str, float] = page.evaluate(
        "() => { const c = document.querySelector('#screen canvas');"
        " const r = c.getBoundingClientRect();"
        " return {x: r.x, y: r.y, sx: r.width / c.width, sy: r.height / c.height}; }"
    )
    x = rect["x"] + (box[0] + box[2]) / 2 * rect["sx"]
    y = rect["y"] + (box[1] + box[3]) / 2 * rect["sy"]
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    page.wait_for_timeout(300)  # the pointer's crossing reaches the agent before the keys
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line:
            page.keyboard.type(line, delay=30)
        if i < len(lines) - 1:
            page.keyboard.press("Enter")
