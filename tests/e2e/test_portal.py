"""Desktops in the browser, end to end on a REAL node: Chromium (Playwright) → the user
portal (TLS) attached to the L7R of an LXC node's HKD → the same connect flow as NX
clients (the HKD starts the container, the VMA starts nxagent) → the VMA's
``vnc_connect`` (x11vnc on the session's display, one-time password) → noVNC's canvas,
whose pixels must show the xterm.

- connect from the desktops list, see the xterm, type into it (the file it creates is
  read in the container), states live on the list;
- takeover both ways: ``qvd-client`` takes the browser's session (the page is told,
  4409, and does not try again), the browser takes a ``qvd-client``'s session (the
  client is cut off); always the same X session (the same xterm process);
- a dropped WebSocket reconnects to the same session; Disconnect suspends it;
- another user can open neither the desktop's page nor its WebSocket;
- spy: an admin opens the user's desktop from the WAT (view-only: pixels, no input, the
  user is told) and through the API (interactive: input reaches the desktop); both are
  in the audit log with their length.

Starts LXC containers: run under the heavy lock. Screenshots are kept as evidence."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from qvd.db import hash_password
from qvd.di.screenshot import Screenshot
from qvd.di.testbed import Xvfb
from tests.api.conftest import add_admin
from tests.e2e.node import Client, L7rNode, in_vm, set_password, xterm_pids
from tests.e2e.portal import (
    SOCKET_PROBE,
    PortalNode,
    canvas_shot,
    close_codes,
    drop_portal_sockets,
    landed,
    log_in_portal,
    open_desktop,
    portal_node,
    portal_page,
    row_cell,
    status_text,
    type_in_xterm,
    wait_canvas,
    wait_cell,
    wait_close_code,
)
from tests.hkd.conftest import lxc_node as lxc_node
from tests.hkd.conftest import lxc_storage as lxc_storage
from tests.hkd.conftest import run_dir as run_dir
from tests.hkd.conftest import runtime, wait_for
from tests.hkd.conftest import test_image as test_image
from tests.hkd.lxcnode import add_lxc_vm
from tests.vma.helpers import wait_for_xterm, xterm_visible
from tests.wat.browser.conftest import BrowserPage, log_in, open_page
from tests.wat.browser.test_journey import api_call, api_session, serving

MISSING = landed("qvd.portal", "qvd.l7r.vnc")
pytestmark = [
    pytest.mark.lxc,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        bool(MISSING), reason=f"not on main yet: {', '.join(MISSING)} (issue #15's portal, vnc)"
    ),
]

__all__ = ["portal_node"]  # the fixture, imported for the tests of this module

PASSWORD = "s3cret-portal!"
START = 180.0  # s: a cold start (a DI unpacked the first time in the session)


@dataclass(frozen=True)
class Desktop:
    vm_id: int
    login: str


@pytest.fixture
def desktop(engine: Engine, portal_node: PortalNode, test_image: Path) -> Desktop:
    """A user with a password and a stopped desktop of the test image."""
    vm_id, _ = add_lxc_vm(engine, portal_node.lxc, test_image, 1)
    return Desktop(vm_id, set_password(engine, vm_id, PASSWORD))


@pytest.fixture
def browser(chromium: Browser, portal_node: PortalNode) -> Iterator[BrowserPage]:
    with portal_page(chromium, portal_node) as bp:
        yield bp


def states(engine: Engine, vm_id: int) -> tuple[str, str]:
    row = runtime(engine, vm_id)
    return str(row["vm_state"]), str(row["user_state"])


def keep(shot: Screenshot, page: Page, evidence_dir: Path, name: str) -> None:
    """The canvas's pixels and the whole page, as PNGs under ``portal/``."""
    folder = evidence_dir / "portal"
    folder.mkdir(parents=True, exist_ok=True)
    if shot.width:
        shot.save_png(folder / f"{name}-canvas.png")
    page.screenshot(path=str(folder / f"{name}-page.png"))


def diagnose(page: Page, node: PortalNode, vm_id: int) -> str:
    """Why no desktop came: the page's status and sockets, the VMA's and X's logs."""
    parts = [f"status: {status_text(page)!r}", f"sockets closed: {close_codes(page)}"]
    for name in ("vma.log", "nxagent.log", "x-session.log", "x11vnc.log"):
        log = f"/var/log/qvd/{name}"  # without the HKD's pings, which would fill the tail
        done = in_vm(node.lxc, vm_id, "sh", "-c", f"grep -v ' ping -> ' {log} | tail -n 40")
        parts.append(f"{name}:\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


def connect_in_browser(
    bp: BrowserPage, node: PortalNode, desk: Desktop, evidence_dir: Path, name: str
) -> tuple[Page, Screenshot]:
    """Connect from the desktops list; the session's page once its canvas shows the
    xterm (checked), and that picture."""
    session = open_desktop(bp, desk.vm_id)
    shot = wait_canvas(session, START)
    keep(shot, session, evidence_dir, name)
    assert xterm_visible(shot), diagnose(session, node, desk.vm_id)
    return session, shot


def file_in_vm(node: PortalNode, vm_id: int, path: str) -> str:
    done = in_vm(node.lxc, vm_id, "cat", path)
    return done.stdout.strip() if done.returncode == 0 else ""


# WATCH of the WAT's journey: every value a cell shows, and a marker a reload would wipe
WATCH = """(selector) => {
  const cell = document.querySelector(selector);
  window.__seen = [cell.textContent.trim()];
  window.__noReload = true;
  new MutationObserver(() => {
    const now = cell.textContent.trim();
    if (window.__seen[window.__seen.length - 1] !== now) window.__seen.push(now);
  }).observe(cell, {childList: true, characterData: true, subtree: true});
}"""


# ---- (a) connect, see, type ---------------------------------------------------------------
def test_connect_in_the_browser_see_the_xterm_and_type_into_it(
    browser: BrowserPage,
    portal_node: PortalNode,
    desktop: Desktop,
    engine: Engine,
    evidence_dir: Path,
) -> None:
    bp, vm_id = browser, desktop.vm_id
    log_in_portal(bp, desktop.login, PASSWORD)
    wait_cell(bp.page, vm_id, "state", "stopped", 30)

    # a second tab keeps the list in view, live (the session may take over the first)
    lister = bp.page.context.new_page()
    lister.goto(portal_node.base + "/")
    lister.wait_for_selector(row_cell(vm_id, "state"))
    lister.evaluate(WATCH, row_cell(vm_id, "state"))

    session, shot = connect_in_browser(bp, portal_node, desktop, evidence_dir, "a-connected")
    wait_cell(lister, vm_id, "state", "running", 30)
    wait_cell(lister, vm_id, "user_state", "connected", 30)
    assert lister.evaluate("() => window.__noReload === true"), "the list was reloaded"
    assert lister.evaluate("() => window.__seen")[0] == "stopped"
    lister.screenshot(path=str(evidence_dir / "portal" / "a-list-connected.png"))
    assert states(engine, vm_id) == ("running", "connected")
    assert len(xterm_pids(portal_node.lxc, vm_id)) == 1

    # typed in the browser, run by the desktop's shell
    target = f"/tmp/portal-{secrets.token_hex(4)}"
    type_in_xterm(session, shot, f"echo typed-in-browser > {target}\n")
    wait_for(
        lambda: file_in_vm(portal_node, vm_id, target) == "typed-in-browser", 30,
        f"{target} written by the keys typed in the browser",
    )  # fmt: skip
    keep(wait_canvas(session, 10), session, evidence_dir, "a-typed")


# ---- (b) takeover: browser → qvd-client → browser -----------------------------------------
@dataclass
class NxScreen:
    """A ``qvd-client`` for the desktop, drawing into an Xvfb of its own."""

    xvfb: Xvfb
    client: Client
    home: Path

    def why(self, node: PortalNode, page: Page, vm_id: int) -> str:
        """The client's output and nxproxy's log, with the page's and the VM's."""
        nxlog = self.home / "nx" / "nxproxy.log"
        return "\n".join([
            self.client.output(), nxlog.read_text()[-2000:] if nxlog.exists() else "no nxproxy.log",
            diagnose(page, node, vm_id),
        ])  # fmt: skip


@contextlib.contextmanager
def qvd_client(node: PortalNode, desk: Desktop, tmp_path: Path) -> Iterator[NxScreen]:
    """``qvd-client`` connecting to the desktop (as tests/e2e/test_desktop_session.py
    runs it); the client and its Xvfb ended on exit."""
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    home = tmp_path / "nx-home"
    xvfb = Xvfb()
    client: Client | None = None
    try:
        env = {**os.environ, "DISPLAY": xvfb.display, "HOME": str(home),
               "NX_ROOT": str(home / "nx")}  # fmt: skip
        client = Client(
            ["--host", "127.0.0.1", "--port", str(node.l7r_port), "--user", desk.login,
             "--password-file", str(password_file), "--vm", str(desk.vm_id), "--insecure",
             "--link", "lan"], env,
        )  # fmt: skip
        yield NxScreen(xvfb, client, home)
    finally:
        if client is not None:
            client.close()
        xvfb.close()


def test_qvd_client_takes_the_session_over_from_the_browser(
    browser: BrowserPage,
    portal_node: PortalNode,
    desktop: Desktop,
    engine: Engine,
    tmp_path: Path,
    evidence_dir: Path,
) -> None:
    bp, vm_id, lxc = browser, desktop.vm_id, portal_node.lxc
    bp.allow(r"4409|taken over|[Dd]isconnect")  # the viewer may say so on the console
    log_in_portal(bp, desktop.login, PASSWORD)
    session, _ = connect_in_browser(bp, portal_node, desktop, evidence_dir, "b-browser")
    xterm = xterm_pids(lxc, vm_id)
    assert len(xterm) == 1

    with qvd_client(portal_node, desktop, tmp_path) as nx:
        # the NX client takes the session: the browser is told, the client shows it
        closed = wait_close_code(session, 4409, 90)
        assert "/ws/desktops/" in closed["url"]
        session.wait_for_function(
            "() => /taken over/i.test(document.querySelector('#status')?.textContent ?? '')"
        )
        shot = wait_for_xterm(nx.xvfb.display, 90)
        shot.save_png(evidence_dir / "portal" / "b-qvd-client.png")
        assert xterm_visible(shot), nx.why(portal_node, session, vm_id)
        assert xterm_pids(lxc, vm_id) == xterm, nx.why(portal_node, session, vm_id)
        wait_for(lambda: states(engine, vm_id)[1] == "connected", 30, "the client connected")
        session.screenshot(path=str(evidence_dir / "portal" / "b-browser-taken-over.png"))
        # the page does not try again: the client keeps the session
        session.wait_for_timeout(3000)
        assert nx.client.proc.poll() is None, nx.why(portal_node, session, vm_id)
        assert [c["code"] for c in close_codes(session)] == [4409]


def test_the_browser_takes_the_session_over_from_qvd_client(
    browser: BrowserPage,
    portal_node: PortalNode,
    desktop: Desktop,
    engine: Engine,
    tmp_path: Path,
    evidence_dir: Path,
) -> None:
    bp, vm_id, lxc = browser, desktop.vm_id, portal_node.lxc
    log_in_portal(bp, desktop.login, PASSWORD)
    with qvd_client(portal_node, desktop, tmp_path) as nx:
        # the NX client starts the desktop and shows it
        shot = wait_for_xterm(nx.xvfb.display, START)
        shot.save_png(evidence_dir / "portal" / "b-qvd-client-first.png")
        assert xterm_visible(shot), nx.why(portal_node, bp.page, vm_id)
        wait_for(lambda: states(engine, vm_id) == ("running", "connected"), 30, "connected")
        xterm = xterm_pids(lxc, vm_id)
        assert len(xterm) == 1

        # the browser takes it: the NX client is cut off, the page shows the same xterm
        session, _ = connect_in_browser(bp, portal_node, desktop, evidence_dir, "b-browser-took")
        wait_for(lambda: nx.client.proc.poll() is not None, 60, "the NX client cut off")
        assert xterm_pids(lxc, vm_id) == xterm
        wait_for(lambda: states(engine, vm_id) == ("running", "connected"), 30, "connected")
        assert close_codes(session) == [], close_codes(session)


# ---- (c) a dropped WebSocket reconnects; Disconnect ---------------------------------------
def test_a_dropped_websocket_reconnects_to_the_same_session(
    browser: BrowserPage,
    portal_node: PortalNode,
    desktop: Desktop,
    engine: Engine,
    evidence_dir: Path,
) -> None:
    bp, vm_id, lxc = browser, desktop.vm_id, portal_node.lxc
    bp.allow(r"1006|[Dd]isconnect|closed|reconnect")  # the drop, said on the console
    log_in_portal(bp, desktop.login, PASSWORD)
    session, _ = connect_in_browser(bp, portal_node, desktop, evidence_dir, "c-before")
    xterm = xterm_pids(lxc, vm_id)
    opened = int(session.evaluate("() => window.__qvdSockets.length"))
    session.evaluate("() => { window.__noReload = true; }")  # a reload would wipe it

    drop_portal_sockets(portal_node)
    dropped = wait_close_code(session, 1006, 30)
    assert "/ws/desktops/" in dropped["url"]
    # a new socket, opened by the viewer itself (no reload), and open; noVNC's canvas of
    # the dropped connection went with it: a canvas with the xterm is the new one's
    session.wait_for_function(
        "(n) => window.__qvdSockets.length > n"
        " && window.__qvdSockets[window.__qvdSockets.length - 1].readyState === 1",
        arg=opened, timeout=60_000,
    )  # fmt: skip
    assert session.evaluate("() => window.__noReload === true"), "the page was reloaded"
    shot = wait_canvas(session, 90)
    keep(shot, session, evidence_dir, "c-reconnected")
    assert xterm_visible(shot), diagnose(session, portal_node, vm_id)
    assert xterm_pids(lxc, vm_id) == xterm
    wait_for(lambda: states(engine, vm_id) == ("running", "connected"), 30, "connected again")

    # the user's Disconnect: the session is suspended, the viewer does not come back
    session.click("button#disconnect")
    wait_for(lambda: states(engine, vm_id)[1] == "disconnected", 30, "disconnected")
    session.wait_for_timeout(3000)
    assert states(engine, vm_id)[1] == "disconnected"  # no reconnect after a disconnect
    assert xterm_pids(lxc, vm_id) == xterm


# ---- (d) another user ---------------------------------------------------------------------
def add_user(engine: Engine, login: str, password: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (tenant_id, login, password) VALUES (1, :l, :p)"),
            {"l": login, "p": hash_password(password)},
        )


OPEN_SOCKET = """async (url) => await new Promise((resolve) => {
  const ws = new WebSocket(url);
  const texts = [];
  ws.onmessage = (e) => texts.push(typeof e.data === 'string' ? e.data : '<binary>');
  ws.onclose = (e) => resolve({code: e.code, texts});
})"""


def test_another_user_cannot_open_the_desktop_page_or_its_websocket(
    browser: BrowserPage,
    portal_node: PortalNode,
    desktop: Desktop,
    engine: Engine,
    chromium: Browser,
) -> None:
    vm_id = desktop.vm_id
    add_user(engine, "mallory", "mallory-pw")
    with portal_page(chromium, portal_node) as other:
        other.allow(r"404|Not Found")  # the page refused, on the console
        log_in_portal(other, "mallory", "mallory-pw")
        assert other.page.locator("table#desktops tr[data-vm-id]").count() == 0
        listed = other.page.request.get(f"{portal_node.base}/api/desktops")
        assert listed.status == 200
        assert listed.json() == []

        page = other.page.request.get(f"{portal_node.base}/desktops/{vm_id}")
        assert page.status == 404, page.status
        assert desktop.login not in page.text()

        wss = portal_node.base.replace("https://", "wss://")
        refused: dict[str, Any] = other.page.evaluate(
            OPEN_SOCKET, f"{wss}/ws/desktops/{vm_id}?geometry=1024x768"
        )
        assert refused["code"] == 4404, refused
        assert not any("ready" in t or t == "<binary>" for t in refused["texts"]), refused

    # the owner's list still shows it stopped: nothing was started for the other user
    assert states(engine, vm_id)[0] == "stopped"
    log_in_portal(browser, desktop.login, PASSWORD)
    wait_cell(browser.page, vm_id, "state", "stopped", 30)


# ---- (e) spy --------------------------------------------------------------------------------
def spy_ticket(answer: dict[str, Any]) -> tuple[str, str]:
    """(ticket, url) of the API's ``vm_spy`` answer."""
    found = answer.get("rows", [answer])[0] if "ticket" not in answer else answer
    return str(found["ticket"]), str(found["url"])


POST_TICKET = """(ticket) => {
  const form = document.createElement('form');
  form.method = 'POST';
  form.action = '/spy';
  const field = document.createElement('input');
  field.type = 'hidden'; field.name = 'ticket'; field.value = ticket;
  form.appendChild(field);
  document.body.appendChild(form);
  form.submit();
}"""


def xmessages(node: PortalNode, vm_id: int) -> list[str]:
    """The ``xmessage`` processes in the container (user and command line)."""
    done = in_vm(node.lxc, vm_id, "ps", "-C", "xmessage", "-o", "user=,args=")
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def audit(engine: Engine, vm_id: int, action: str) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT action, administrator_name, arguments, source FROM audit_log "
                "WHERE action = :a AND object_id = :v ORDER BY id"
            ),
            {"a": action, "v": vm_id},
        ).mappings()
        return [dict(r) for r in rows]


@pytest.mark.skipif(
    bool(landed("qvd.portal.spy", "qvd.api.services.spy")),
    reason="spy (qvd.portal.spy, qvd.api.services.spy) is not on main yet",
)
def test_an_admin_spies_view_only_from_the_wat_and_interactively_through_the_api(
    browser: BrowserPage,
    portal_node: PortalNode,
    desktop: Desktop,
    engine: Engine,
    chromium: Browser,
    tmp_path: Path,
    evidence_dir: Path,
) -> None:
    vm_id, lxc = desktop.vm_id, portal_node.lxc
    with Session(engine) as s, s.begin():
        add_admin(s, "root", 0)
    log_in_portal(browser, desktop.login, PASSWORD)
    user_view, _ = connect_in_browser(browser, portal_node, desktop, evidence_dir, "e-user")
    xterm = xterm_pids(lxc, vm_id)

    node = L7rNode(hkd=portal_node.hkd, lxc=lxc)
    extra = {"l7r.portal.port": str(portal_node.portal_port)}
    with serving(tmp_path, engine, node, **extra) as api_base:
        # view-only, from the WAT's VM page: the spy opens in a new tab on the portal
        with open_page(chromium, api_base) as wat:
            wat.page.set_default_timeout(30_000)
            wat.allow(r"net::ERR_NETWORK_CHANGED$")  # interfaces change under Chromium
            wat.page.context.add_init_script(SOCKET_PROBE)
            log_in(wat)
            wat.goto(f"/vms/{vm_id}")
            with wat.page.context.expect_page(timeout=30_000) as opened:
                wat.page.click("#vm-spy")
            spy = opened.value
            spy.wait_for_load_state()
            assert spy.url.startswith(portal_node.base + "/spy"), spy.url
            shot = wait_canvas(spy, 60)
            keep(shot, spy, evidence_dir, "e-spy-view-only")
            assert xterm_visible(shot), diagnose(spy, portal_node, vm_id)
            wait_for(lambda: bool(xmessages(portal_node, vm_id)), 30, "the user's notice")
            notice = xmessages(portal_node, vm_id)
            assert any(line.startswith(desktop.login[:7]) for line in notice), notice

            # keys typed in a view-only spy never reach the desktop
            ignored = f"/tmp/spy-{secrets.token_hex(4)}"
            type_in_xterm(spy, shot, f"echo spy-typed > {ignored}\n")
            spy.wait_for_timeout(5000)
            assert file_in_vm(portal_node, vm_id, ignored) == ""
            spy.close()
        wait_for(lambda: bool(audit(engine, vm_id, "vm_spy_end")), 30, "vm_spy_end logged")

        # interactive, through the API's action and the portal's /spy in the browser
        api = api_session(api_base, tmp_path)
        ticket, url = spy_ticket(
            api_call(api, "vm_spy", filters={"id": vm_id}, arguments={"interactive": True})
        )
        assert url == f"{portal_node.base}/spy", url
        with portal_page(chromium, portal_node) as admin:
            admin.allow(r"\b40[0-9]\b|410")  # the spent ticket, refused
            admin.goto("/")
            with admin.page.expect_navigation():
                admin.page.evaluate(POST_TICKET, ticket)
            shot = wait_canvas(admin.page, 60)
            keep(shot, admin.page, evidence_dir, "e-spy-interactive")
            assert xterm_visible(shot), diagnose(admin.page, portal_node, vm_id)
            typed = f"/tmp/spy-{secrets.token_hex(4)}"
            type_in_xterm(admin.page, shot, f"echo spy-typed > {typed}\n")
            wait_for(lambda: file_in_vm(portal_node, vm_id, typed) == "spy-typed", 30,
                     "the interactive spy's keys typed")  # fmt: skip
            # the ticket was single-use: a second page with it gets nothing
            second = admin.page.context.new_page()
            second.goto(portal_node.base + "/")
            with second.expect_navigation():
                second.evaluate(POST_TICKET, ticket)
            assert canvas_shot(second) is None or not xterm_visible(wait_canvas(second, 5))
            second.close()

    # the user kept their session all along
    assert xterm_pids(lxc, vm_id) == xterm
    assert xterm_visible(wait_canvas(user_view, 30))
    wait_for(lambda: len(audit(engine, vm_id, "vm_spy_end")) == 2, 30, "both spies ended")
    started = audit(engine, vm_id, "vm_spy")
    ended = audit(engine, vm_id, "vm_spy_end")
    assert [r["administrator_name"] for r in started] == ["root", "root"], started
    for row in ended:
        assert (row["administrator_name"], row["source"]) == ("root", "PORTAL"), row
        assert isinstance(row["arguments"]["seconds"], int | float), row
        assert row["arguments"]["seconds"] >= 1, row
    assert [r["arguments"]["interactive"] for r in ended] == [False, True], ended
