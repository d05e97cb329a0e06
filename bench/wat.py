"""WAT benchmark: the VM list and the dashboard with 10,000 VMs in a real browser, and
the delay from a database change to the changed cell on screen.

It makes its own throwaway PostgreSQL cluster (fsync off) in a temporary directory,
fills it with 10,000 VMs (SQL bulk inserts: users, an OSF, a DI, two nodes), runs the
API (and so the WAT) over TLS in a separate process as ``qvd up`` does, logs in with
Debian's Chromium driven by Playwright, then measures, all from the page's own clock
(``performance``, navigation start = 0):

- ``vm_list_ms``: ``/vms`` loaded until its table is usable (DOMContentLoaded: the rows
  are in the server-rendered page and the page's scripts have run), p50 of N loads;
- ``fcp_ms``: first contentful paint of ``/vms`` (p50);
- ``dashboard_ms``: the same as ``vm_list_ms`` for ``/`` (p50);
- ``live_update_ms``: ``UPDATE vm_runtimes SET vm_state = …`` of a VM on screen until a
  MutationObserver in the page sees its state cell change (p50 of several changes);
  the start is read from the page's clock just before the UPDATE, so the figure also
  holds the UPDATE itself and one round trip to the browser (it errs high);
- ``list_server_ms``: request sent until the first byte of ``/vms`` came back (the
  server's time for the page, p50).

Run as root: ``.venv/bin/python bench/wat.py [--quick] [--vms N]``. The last line
printed is ``vm_list_ms=… live_update_ms=… dashboard_ms=… fcp_ms=… list_server_ms=…``.
Targets: list < 300 ms, live update < 1 s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from typing import Any

from sqlalchemy import Engine, text

from benchkit import (
    cleanup_begins,
    exit_on_sigterm,
    free_port,
    run_main,
    scratch_dir,
    throwaway_database,
    wait_listening,
)
from qvd.config import Config
from qvd.db import DATABASE_URL_ENV, hash_password

VMS = 10_000
PASSWORD = "bench-password"  # noqa: S105 - a throwaway cluster's admin
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as tests/wat/browser/conftest.py: root, no GPU, no calls out
    "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-features=Translate,OptimizationHints,MediaRouter",
]  # fmt: skip
LIVE_TIMEOUT_MS = 10_000
FIGURES = ("vm_list_ms", "live_update_ms", "dashboard_ms", "fcp_ms", "list_server_ms")
"""The last line's names, in order."""


def populate(engine: Engine, vms: int) -> None:
    """``vms`` VMs of ``vms // 10`` users in tenant 1 (a third running on node1), an OSF
    with a published DI, two running nodes and a superadmin ``bench``."""
    users = max(1, vms // 10)
    pw = hash_password(PASSWORD)
    with engine.begin() as conn:
        run = conn.execute
        run(text("INSERT INTO administrators (tenant_id, name, password) "
                 "VALUES (0, 'bench', :pw)"), {"pw": pw})  # fmt: skip
        run(text("INSERT INTO role_administrator_relations (role_id, administrator_id) "
                 "SELECT r.id, a.id FROM roles r, administrators a "
                 "WHERE r.name = 'Root' AND a.name = 'bench'"))  # fmt: skip
        run(text("INSERT INTO osfs (tenant_id, name, memory) VALUES (1, 'desk', 256)"))
        run(text("INSERT INTO dis (osf_id, path, version) SELECT id, 'desk.tar', 'v1' FROM osfs"))
        run(text("INSERT INTO di_tags (di_id, tag, fixed) SELECT id, t, t = 'v1' FROM dis, "
                 "unnest(ARRAY['v1', 'head', 'default']) t"))  # fmt: skip
        run(text("UPDATE di_runtimes SET state = 'published'"))
        run(text("INSERT INTO hosts (name, address) "
                 "VALUES ('node1', '10.9.0.1'), ('node2', '10.9.0.2')"))  # fmt: skip
        run(text("UPDATE host_runtimes SET state = 'running', ok_ts = now() + interval '1 day', "
                 "free_ram_mb = 64000, idle_cpu = 0.9, running_vms = 0"))  # fmt: skip
        run(text("INSERT INTO users (tenant_id, login, password) "
                 "SELECT 1, 'user' || g, :pw FROM generate_series(1, :n) g"),
            {"pw": pw, "n": users})  # fmt: skip
        run(text("INSERT INTO vms (name, user_id, osf_id, ip) "
                 "SELECT 'vm-' || g, u.id, o.id, '10.1.' || (g / 250) || '.' || (g % 250 + 1) "
                 "FROM generate_series(1, :n) g "
                 "JOIN users u ON u.login = 'user' || (g % :users + 1) CROSS JOIN osfs o"),
            {"n": vms, "users": users})  # fmt: skip
        run(text("UPDATE vm_runtimes SET vm_state = 'running', user_state = 'connected', "
                 "host_id = (SELECT min(id) FROM hosts) WHERE vm_id % 3 = 0"))  # fmt: skip
        run(text("ANALYZE"))


def _serve(overrides: dict[str, str], url: str) -> None:
    os.environ[DATABASE_URL_ENV] = url
    from qvd.api import serve

    serve(Config().with_overrides(overrides, source="bench"))


# ---- in the browser ---------------------------------------------------------------------------
_NAVIGATION = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  return {ready: nav.domContentLoadedEventEnd, ttfb: nav.responseStart - nav.requestStart,
          fcp: fcp ? fcp.startTime : null};
}"""

_WATCH_STATES = """() => {
  window.qvdBench = {changes: {}};
  const table = document.querySelector("table#list");
  new MutationObserver(() => {
    const now = performance.now();
    for (const cell of table.querySelectorAll("td[data-field=state]")) {
      const id = cell.closest("[data-id]").dataset.id;
      const seen = window.qvdBench.changes[id];
      const text = cell.textContent.trim();
      if (!seen || seen.text !== text) window.qvdBench.changes[id] = {text, at: now};
    }
  }).observe(table, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def _load(page: Any, url: str, selector: str) -> dict[str, float]:
    page.goto(url, wait_until="load")
    page.wait_for_selector(selector, state="attached")
    figures: dict[str, float] = page.evaluate(_NAVIGATION)
    return figures


def _log_in(page: Any, base: str) -> None:
    page.goto(base + "/login")
    if page.locator("#tenant").count():
        page.fill("#tenant", "*")
    page.fill("#login", "bench")
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#admin-name")


def bench_pages(page: Any, base: str, rounds: int) -> dict[str, float]:
    lists = [_load(page, base + "/vms", "table#list tbody tr[data-id]") for _ in range(rounds)]
    boards = [_load(page, base + "/", "#count-vms-running") for _ in range(max(3, rounds // 2))]
    fcps = [f["fcp"] for f in lists if f["fcp"] is not None]
    return {
        "vm_list_ms": statistics.median(f["ready"] for f in lists),
        "fcp_ms": statistics.median(fcps) if fcps else float("nan"),
        "dashboard_ms": statistics.median(f["ready"] for f in boards),
        "list_server_ms": statistics.median(f["ttfb"] for f in lists),
    }


def bench_live(page: Any, base: str, engine: Engine, rounds: int) -> float:
    """p50 of DB change → state cell changed, over VMs of the list's first page."""
    page.goto(base + "/vms")
    page.wait_for_selector("table#list[data-live=open]")
    page.evaluate(_WATCH_STATES)
    ids = [int(i) for i in page.eval_on_selector_all(
        "table#list tbody tr[data-id]", "rows => rows.map(r => r.dataset.id)")]  # fmt: skip
    delays: list[float] = []
    for n in range(rounds):
        vm = ids[n % len(ids)]
        before = page.evaluate(f"window.qvdBench.changes[{vm}] || null")
        start = float(page.evaluate("performance.now()"))
        with engine.begin() as conn:
            new = conn.execute(
                text("UPDATE vm_runtimes SET vm_state = CASE WHEN vm_state = 'running' "
                     "THEN 'stopped' ELSE 'running' END WHERE vm_id = :vm RETURNING vm_state"),
                {"vm": vm},
            ).scalar_one()  # fmt: skip
        page.wait_for_function(
            "([vm, state, before]) => { const c = window.qvdBench.changes[vm];"
            " return !!c && c.text === state && (!before || c.at !== before.at); }",
            arg=[vm, new, before],
            timeout=LIVE_TIMEOUT_MS,
        )
        at = float(page.evaluate(f"window.qvdBench.changes[{vm}].at"))
        delays.append(at - start)
    return statistics.median(delays)


def measure(base: str, engine: Engine, rounds: int, live_rounds: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(ignore_https_errors=True, locale="en-GB",
                                          viewport={"width": 1366, "height": 768})  # fmt: skip
            page = context.new_page()
            page.set_default_timeout(30_000)
            _log_in(page, base)
            _load(page, base + "/vms", "table#list")  # warm up: templates, caches
            figures = bench_pages(page, base, rounds)
            figures["live_update_ms"] = bench_live(page, base, engine, live_rounds)
            context.close()
        finally:
            browser.close()
    return figures


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    parser.add_argument("--vms", type=int, default=VMS, help="VMs in the database")
    args = parser.parse_args()
    rounds, live_rounds = (8, 6) if args.quick else (30, 20)
    with (
        scratch_dir("qvd-bench-wat-") as base,
        throwaway_database(base, spread_vm_ids=False) as db,
    ):
        cluster = db.cluster
        t0 = time.monotonic()
        populate(db.engine, args.vms)
        print(f"populated {args.vms} VMs in {time.monotonic() - t0:.1f} s", flush=True)
        port = free_port()
        overrides = {
            "api.port": str(port), "path.api.ssl.cert": str(base / "cert.pem"),
            "path.api.ssl.key": str(base / "key.pem"), "path.storage.root": str(base / "st"),
        }  # fmt: skip
        url = (f"postgresql:///{cluster.dbname}?host={cluster.socket_dir}&port={cluster.port}"
               f"&user={cluster.role}")  # fmt: skip
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(overrides, url))
        try:
            server.start()
            wait_listening(port, 30)
            figures = measure(f"https://127.0.0.1:{port}", db.engine, rounds, live_rounds)
            print(
                f"/vms ({args.vms} VMs): usable p50 {figures['vm_list_ms']:.0f} ms, first "
                f"contentful paint {figures['fcp_ms']:.0f} ms, server "
                f"{figures['list_server_ms']:.0f} ms; dashboard usable "
                f"{figures['dashboard_ms']:.0f} ms; DB change to screen p50 "
                f"{figures['live_update_ms']:.0f} ms",
                flush=True,
            )
            print(" ".join(f"{name}={figures[name]:.1f}" for name in FIGURES))
        finally:
            cleanup_begins()
            if server.pid is not None:
                server.terminate()
                server.join(10)
    return 0


if __name__ == "__main__":
    run_main(main)
