#!/usr/bin/env python3
"""Benchmark of the browser user's path: portal login → first desktop pixel in the page.

A real node (PostgreSQL, HKD, L7R with the user portal attached, bridge, LXC desktop of
the ``test`` image) and Debian's Chromium driven headless by Playwright. Each run is a
fresh browser context (no cookies): the portal's login page is loaded, then the clock
starts as the login form is submitted; the desktops list comes, Connect is clicked, the
session page opens its WebSocket, the connect flow runs, noVNC draws. The first pixel
is stamped in the page itself: an init script (run through DevTools, outside the
page's CSP) reads noVNC's canvas on every animation frame and stamps ``Date.now()``
once it holds the xterm (hundreds of near-white samples on the black root). Same host,
same wall clock as this process: the figure is stamp - submit.

- cold: the VM is stopped (the connect flow has the HKD start the container and the
  VMA start nxagent);
- warm: the VM runs and its X session is suspended (the browser of the run before
  pressed Disconnect);
- for each, also ``click → first pixel`` (the Connect click to the stamp: DESIGN.md's
  "browser desktop (portal): click → first pixel, running desktop < 1 s");
- the NX baseline, in the same run when cheap (one reconnect of ``qvd-client`` into an
  Xvfb, as bench/e2e.py measures it: spawn → first pixel): ``warm_ratio`` = browser
  warm click → pixel ÷ NX reconnect spawn → pixel.

Each kind also gets its breakdown from marks stamped in the pages (their navigation
and resource timings, the session page's socket events): login answered, desktops page
loaded, click → session page → socket → connect flow ready → first RFB frame → pixel.
With ``QVD_BENCH_TRACE=<file>`` every run's marks and request timings are appended to
the file (JSON lines) and the VM's logs of the last warm runs are copied next to it;
``QVD_TEST_DI_CACHE`` picks the image cache, as for the tests.

Everything is made in temporary places and removed at the end, also on failure or
SIGTERM (the DI's unpacked base too). The portal listens on loopback. Run as root:

    .venv/bin/python bench/html5.py [--quick] [--runs N]

The last line is ``browser_warm_ms=… browser_cold_ms=… browser_warm_click_ms=…
browser_cold_click_ms=… nx_warm_ms=… warm_ratio=…`` (p50s; target: warm < 1000).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from benchkit import bench_node, cleanup_begins, exit_on_sigterm, free_port, run_main
from e2e import Bench, Desk, Screen
from l7r import stop_vm, wait_user_state
from qvd.db import Listener, hash_password
from qvd.di import ensure_image
from wat import CHROMIUM, CHROMIUM_ARGS

PASSWORD = "bench-password"  # noqa: S105 - a user of a throwaway cluster
VIEWPORT = {"width": 1280, "height": 800}
PIXEL_TIMEOUT_MS = 120_000

# Stamps window.__firstPixel when noVNC's canvas shows the xterm (white on black).
FIRST_PIXEL = """(() => {
  window.__marks = {};
  const mark = (name) => { if (!(name in window.__marks)) window.__marks[name] = Date.now(); };
  mark('page');
  const Native = window.WebSocket;
  function Stamped(...args) {  // a native socket still (noVNC checks its prototype)
    const ws = new Native(...args);
    mark('socket');
    ws.addEventListener('open', () => mark('open'));
    ws.addEventListener('message', (e) => {
      if (typeof e.data !== 'string') mark('first rfb');
      else if (e.data.includes('"ready"')) mark('ready');
      else mark('first progress');
    });
    return ws;
  }
  Stamped.prototype = Native.prototype;
  for (const name of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) {
    Object.defineProperty(Stamped, name, {value: Native[name]});
  }
  window.WebSocket = Stamped;
  const look = () => {
    const canvas = document.querySelector('#screen canvas');
    if (canvas && canvas.width > 0 && canvas.height > 0) {
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let white = 0;
      for (let i = 0; i < data.length; i += 64) {
        if (data[i] >= 235 && data[i + 1] >= 235 && data[i + 2] >= 235) white++;
      }
      if (white > 400) { window.__firstPixel = Date.now(); mark('first pixel'); return; }
    }
    requestAnimationFrame(look);
  };
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', look);
  } else {
    look();
  }
})();"""


# Epoch ms of the steps between the login form's submit and the Connect button, from
# the desktops page's own navigation and resource timings.
LOGIN_MARKS = """(() => {
  const origin = Date.now() - performance.now();  // timeOrigin may drift from Date.now()
  const at = (ms) => origin + ms;
  const nav = performance.getEntriesByType('navigation')[0];
  const marks = {
    'login answered': at(nav.redirectEnd || nav.responseStart),
    'list page answered': at(nav.responseEnd),
    'list page loaded': at(nav.domContentLoadedEventEnd),
  };
  for (const r of performance.getEntriesByType('resource')) {
    if (r.name.endsWith('/api/desktops') && !('list answered' in marks)) {
      marks['list asked'] = at(r.startTime);
      marks['list answered'] = at(r.responseEnd);
    }
  }
  return marks;
})()"""

# Epoch ms of the session page's own steps up to its socket.
SESSION_MARKS = """(() => {
  const origin = Date.now() - performance.now();
  const at = (ms) => origin + ms;
  const nav = performance.getEntriesByType('navigation')[0];
  const marks = {
    'session asked': at(nav.startTime),
    'session answered': at(nav.responseEnd),
    'session parsed': at(nav.domInteractive),
  };
  for (const r of performance.getEntriesByType('resource')) {
    if (r.name.endsWith('/static/js/session.js')) marks['session.js loaded'] = at(r.responseEnd);
    if (r.name.endsWith('/static/js/viewer.js')) marks['viewer.js loaded'] = at(r.responseEnd);
  }
  return marks;
})()"""


@dataclass
class Runs:
    """Milliseconds per kind of run: login → pixel, and click → pixel."""

    login: dict[str, list[float]] = field(default_factory=dict)
    click: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def add(self, kind: str, login_ms: float, click_ms: float, marks: dict[str, float]) -> None:
        self.login.setdefault(kind, []).append(login_ms)
        self.click.setdefault(kind, []).append(click_ms)
        self.steps.setdefault(kind, []).append(marks)


STEPS = (  # (name, from mark, to mark): the breakdown of login → first pixel
    ("submit → login answered", "submit", "login answered"),
    ("→ list page answered", "login answered", "list page answered"),
    ("→ list page loaded", "list page answered", "list page loaded"),
    ("→ list asked", "list page loaded", "list asked"),
    ("→ list answered", "list asked", "list answered"),
    ("→ Connect clicked", "list answered", "click"),
    ("click → session page", "click", "page"),
    ("  (click → session answered)", "click", "session answered"),
    ("  (session answered → parsed)", "session answered", "session parsed"),
    ("  (parsed → session.js loaded)", "session parsed", "session.js loaded"),
    ("  (parsed → viewer.js loaded)", "session parsed", "viewer.js loaded"),
    ("  (page → socket made)", "page", "socket"),
    ("page → socket opened", "page", "open"),
    ("socket → connect flow ready", "open", "ready"),
    ("ready → first RFB frame", "ready", "first rfb"),
    ("RFB → xterm on the canvas", "first rfb", "first pixel"),
)


def breakdown(runs: list[dict[str, float]]) -> str:
    lines = []
    for name, start, end in STEPS:
        spans = [r[end] - r[start] for r in runs if start in r and end in r]
        if spans:
            lines.append(f"    {name:<30} {statistics.median(spans):7.0f} ms")
    return "\n".join(lines)


def session_page(context: Any, list_page: Any, vm: int) -> Any:
    """The page Connect opened (a new tab or the list's own), once it is at its URL."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for page in context.pages:
            if f"/desktops/{vm}" in page.url:
                return page
        list_page.wait_for_timeout(5)
    raise RuntimeError(f"Connect did not open /desktops/{vm}")


def browser_run(
    browser: Any, base: str, login: str, vm: int
) -> tuple[float, float, dict[str, float]]:
    """One fresh browser: login submitted → first pixel, Connect clicked → first pixel
    (ms), and the session page's marks (epoch ms, with the click's); then Disconnect,
    and the context closed."""
    context = browser.new_context(ignore_https_errors=True, viewport=VIEWPORT)
    try:
        context.add_init_script(FIRST_PIXEL)
        requests: list[Any] = []
        context.on("requestfinished", lambda r: requests.append(r))
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(base + "/")
        form = page.locator("form#login")
        form.locator("[name=login]").fill(login)
        form.locator("[name=password]").fill(PASSWORD)
        submitted = time.time() * 1000
        form.locator("[type=submit]").click()
        connect = page.locator(f'table#desktops tr[data-vm-id="{vm}"] a[data-op="connect"]')
        connect.wait_for()
        clicked = time.time() * 1000
        login_marks = page.evaluate(LOGIN_MARKS)
        connect.click()
        session = session_page(context, page, vm)
        try:
            session.wait_for_function("() => window.__firstPixel", timeout=PIXEL_TIMEOUT_MS)
        except Exception as exc:
            status = session.evaluate("() => document.querySelector('#status')?.textContent")
            marks = session.evaluate("() => window.__marks")
            raise RuntimeError(
                f"no desktop on the canvas: status {status!r}, marks {marks}"
            ) from exc
        stamp = float(session.evaluate("() => window.__firstPixel"))
        marks = {str(k): float(v) for k, v in session.evaluate("() => window.__marks").items()}
        session_marks = session.evaluate(SESSION_MARKS)
        if os.environ.get("QVD_BENCH_TRACE"):
            with open(os.environ["QVD_BENCH_TRACE"], "a") as trace:
                reqs = [(r.url, r.timing) for r in requests]
                print(
                    json.dumps(
                        {"marks": marks, "reqs": reqs, "submit": submitted, "click": clicked}
                    ),
                    file=trace,
                )
        session.click("button#disconnect")
        marks = {**marks, **login_marks, **session_marks, "submit": submitted, "click": clicked}
        return stamp - submitted, stamp - clicked, marks
    finally:
        context.close()


def vma_log(bench: Bench, desk: Desk) -> Path:
    """The VMA's log in the VM's overlay layer (of its current run)."""
    return desk.agent_log(bench.storage).with_name("vma.log")


def viewer_detached(vma_log: Path, timeout: float = 30) -> float:
    """Wait until the VMA says its in-VM viewer let go of the session as often as it
    attached one (its log, read in the VM's overlay layer): the next browser's attach
    does not wait for the last one's teardown. Returns the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        text_ = vma_log.read_text(errors="replace") if vma_log.exists() else ""
        if text_.count("in-VM viewer attached") <= text_.count("in-VM viewer detached"):
            return time.monotonic() - began
        time.sleep(0.02)
    raise RuntimeError(f"the in-VM viewer did not let go within {timeout} s ({vma_log})")


def nx_reconnect(bench: Bench, engine: Engine, desk: Desk) -> float:
    """``qvd-client`` spawned → first pixel, the VM running and its session suspended."""
    stamps, client = bench.first_pixel(desk)
    try:
        wait_user_state(engine, desk.vm, "connected", 30)
    finally:
        client.stop()
    wait_user_state(engine, desk.vm, "disconnected", 30)
    return stamps["first pixel"]


def p50(values: list[float] | None) -> str:
    return f"{statistics.median(values):.0f}" if values else "skipped"


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each (under a minute)")
    parser.add_argument("--runs", type=int, default=None, help="cold runs (each then warm ones)")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    began = time.monotonic()
    logging.basicConfig(level=logging.WARNING)
    from playwright.sync_api import sync_playwright

    cache = os.environ.get("QVD_TEST_DI_CACHE")  # a separate image cache, if set
    image = ensure_image("test", cache=Path(cache) if cache else None)
    screen: Screen | None = None
    bench: Bench | None = None
    with bench_node("qvd-bench-html5-") as node:
        try:
            engine, target = node.db.engine, node.db.target
            host, (vm,) = node.seed(image, 1)
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET password = :p"), {"p": hash_password(PASSWORD)})
            portal_port = free_port()
            port = node.start_l7r(**{
                "l7r.portal.enable": "1", "l7r.portal.address": "127.0.0.1",
                "l7r.portal.port": str(portal_port),
            })  # fmt: skip
            base = f"https://127.0.0.1:{portal_port}"
            print(f"portal on {base}", flush=True)
            screen = Screen(node.root)
            password_file = node.root / "password"
            password_file.write_text(PASSWORD + "\n")
            bench = Bench(port=port, screen=screen, root=node.root,
                          password_file=password_file, storage=node.root / "storage")  # fmt: skip
            desk = Desk("test", vm, "u0")
            measured = Runs()
            nx: list[float] = []
            teardown: list[float] = []  # s: disconnected → the in-VM viewer gone
            with (
                sync_playwright() as p,
                Listener(target, ["vm_changed"]) as notes,
            ):
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                try:
                    # outside the figures: the DI's base unpacked, Chromium's first start
                    browser_run(browser, base, "u0", vm)
                    wait_user_state(engine, vm, "disconnected", 30)
                    stop_vm(engine, notes, vm, host)
                    for _ in range(runs):
                        measured.add("cold", *browser_run(browser, base, "u0", vm))
                        wait_user_state(engine, vm, "disconnected", 30)
                        for _ in range(max(runs, 2)):
                            teardown.append(viewer_detached(vma_log(bench, desk)))
                            measured.add("warm", *browser_run(browser, base, "u0", vm))
                            wait_user_state(engine, vm, "disconnected", 30)
                        teardown.append(viewer_detached(vma_log(bench, desk)))
                        if os.environ.get("QVD_BENCH_TRACE"):  # the VM's side of the runs
                            for log_ in vma_log(bench, desk).parent.glob("*.log"):
                                shutil.copy(log_, f"{os.environ['QVD_BENCH_TRACE']}.{log_.name}")
                        nx.append(nx_reconnect(bench, engine, desk))
                        stop_vm(engine, notes, vm, host)
                finally:
                    browser.close()
            for kind in ("cold", "warm"):
                login, click = measured.login[kind], measured.click[kind]
                print(
                    f"{kind}, {len(login)} runs: login → first pixel p50 {p50(login)} ms "
                    f"(max {max(login):.0f}), Connect click → first pixel p50 {p50(click)} ms"
                )
                print(breakdown(measured.steps[kind]))
            print(
                f"NX reconnect (qvd-client spawn → first pixel), {len(nx)} runs: p50 {p50(nx)} ms"
            )
            warm_click = statistics.median(measured.click["warm"])
            ratio = f"{warm_click / statistics.median(nx):.2f}" if nx else "skipped"
            print(
                "in-VM viewer teardown after a disconnect (waited before each warm run): "
                f"p50 {statistics.median(teardown) * 1000:.0f} ms, "
                f"max {max(teardown) * 1000:.0f} ms"
            )
            print(f"bench time (image build excluded): {time.monotonic() - began:.1f} s")
            node.figures = (
                f"browser_warm_ms={p50(measured.login['warm'])} "
                f"browser_cold_ms={p50(measured.login['cold'])} "
                f"browser_warm_click_ms={p50(measured.click['warm'])} "
                f"browser_cold_click_ms={p50(measured.click['cold'])} "
                f"nx_warm_ms={p50(nx)} warm_ratio={ratio}"
            )
        finally:
            cleanup_begins()
            if bench is not None:
                for client in bench.clients:
                    client.stop()
            if screen is not None:
                screen.close()
    return 0


if __name__ == "__main__":
    run_main(main)
