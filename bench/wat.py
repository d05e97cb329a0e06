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

Then, over loopback with an HTTP client (the whole server-rendered page, p50):

- ``list_filtered_ms``: the VM list with a free-text search, a column filter and a sort;
- ``csv10k_ms``: the CSV export of every VM (streamed, paged through the action);
- ``role_page_ms``: the ACL editor of a built-in role with a deep inheritance tree
  (Total Master, every ACL); ``role_custom_ms``: of a custom role that inherits Master
  and denies one ACL; ``admin_page_ms``: an administrator's page (its effective ACLs
  through Root).

The world (``benchkit.seed_vms``, as ``bench/api.py``'s): 10,000 VMs of 1,000 users.
Run as root: ``.venv/bin/python bench/wat.py [--quick] [--vms N]``. The last line
printed is ``vm_list_ms=… live_update_ms=… dashboard_ms=… fcp_ms=… list_server_ms=…
list_filtered_ms=… csv10k_ms=… role_page_ms=… role_custom_ms=… admin_page_ms=…``.
Targets: list < 300 ms, live update < 1 s.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import statistics
import time
from typing import Any

import httpx
from sqlalchemy import Engine, text

from benchkit import (
    api_server,
    exit_on_sigterm,
    run_main,
    scratch_dir,
    seed_vms,
    throwaway_database,
)

VMS = 10_000
PASSWORD = "bench-password"  # noqa: S105 - a throwaway cluster's admin
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as tests/wat/browser/conftest.py: root, no GPU, no calls out
    "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-features=Translate,OptimizationHints,MediaRouter",
]  # fmt: skip
LIVE_TIMEOUT_MS = 10_000
FILTERED_LIST = "/vms?q=vm-1&f.state=running&sort=-name"
FIGURES = (
    "vm_list_ms", "live_update_ms", "dashboard_ms", "fcp_ms", "list_server_ms",
    "list_filtered_ms", "csv10k_ms", "role_page_ms", "role_custom_ms", "admin_page_ms",
)  # fmt: skip
"""The last line's names, in order."""


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


# ---- over HTTP ---------------------------------------------------------------------------------
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def _timed(client: httpx.Client, path: str, rounds: int, must: str) -> float:
    """p50 of ``rounds`` GETs of ``path`` (after one to warm up), each checked."""
    client.get(path)
    times: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        reply = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert reply.status_code == 200, reply.text[:500]
        assert must in reply.text, must
    return statistics.median(times)


def _first_id(client: httpx.Client, path: str) -> int:
    match = re.search(r'<tr data-id="(\d+)"', client.get(path).text)
    assert match, path
    return int(match.group(1))


def _custom_role(client: httpx.Client, csrf: str, master: int) -> int:
    """A role of the first tenant that inherits Master and denies one ACL (WAT forms)."""
    tenant = re.search(r'<option value="(\d+)"', client.get("/roles/new").text)
    assert tenant, "no tenant to create the role in"
    made = client.post(
        "/roles/new", data={"csrf": csrf, "name": "bench role", "tenant_id": tenant.group(1)}
    )
    assert made.status_code == 303, made.text[:500]
    role = int(made.headers["location"].rsplit("/", 1)[1])
    for path, data in (
        (f"/roles/{role}/roles", {"role": str(master), "how": "inherit"}),
        (f"/roles/{role}/acls", {"acl": "vm.see.ip", "how": "deny"}),
    ):
        assert client.post(path, data={"csrf": csrf, **data}).status_code == 303
    return role


def _csv_ms(client: httpx.Client, rounds: int, vms: int) -> float:
    times: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        reply = client.get("/vms.csv")
        times.append((time.perf_counter() - t0) * 1000)
        assert reply.status_code == 200, reply.text[:500]
        rows = len(list(csv.reader(io.StringIO(reply.text)))) - 1
        assert rows == vms, rows
    return statistics.median(times)


def measure_http(base: str, ca: str, vms: int, rounds: int) -> dict[str, float]:
    """The filtered list, the CSV export and the roles' and administrators' pages."""
    with httpx.Client(base_url=base, verify=ca, timeout=60) as c:
        form = {"login": "bench", "password": PASSWORD, "tenant": "*", "next": "/"}
        assert c.post("/login", data=form).status_code == 303
        csrf = _CSRF.search(c.get("/").text)
        assert csrf
        builtin = _first_id(c, "/roles?q=Total+Master")
        master = _first_id(c, "/roles?q=Master&sort=name")
        role = _custom_role(c, csrf.group(1), master)
        admin = _first_id(c, "/administrators?q=bench")
        return {
            "list_filtered_ms": _timed(c, FILTERED_LIST, rounds, 'id="list"'),
            "csv10k_ms": _csv_ms(c, max(1, rounds // 10), vms),
            "role_page_ms": _timed(c, f"/roles/{builtin}", rounds, "Effective result"),
            "role_custom_ms": _timed(c, f"/roles/{role}", rounds, "no: denied here"),
            "admin_page_ms": _timed(c, f"/administrators/{admin}", rounds, "Effective ACLs"),
        }


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    parser.add_argument("--vms", type=int, default=VMS, help="VMs in the database")
    args = parser.parse_args()
    rounds, live_rounds, http_rounds = (8, 6, 10) if args.quick else (30, 20, 50)
    with (
        scratch_dir("qvd-bench-wat-") as root,
        throwaway_database(root, spread_vm_ids=False) as db,
    ):
        t0 = time.monotonic()
        seed_vms(db.engine, PASSWORD, args.vms, max(1, args.vms // 10))
        print(f"populated {args.vms} VMs in {time.monotonic() - t0:.1f} s", flush=True)
        with api_server(root, db) as port:
            base = f"https://127.0.0.1:{port}"
            figures = measure(base, db.engine, rounds, live_rounds)
            print(
                f"/vms ({args.vms} VMs): usable p50 {figures['vm_list_ms']:.0f} ms, first "
                f"contentful paint {figures['fcp_ms']:.0f} ms, server "
                f"{figures['list_server_ms']:.0f} ms; dashboard usable "
                f"{figures['dashboard_ms']:.0f} ms; DB change to screen p50 "
                f"{figures['live_update_ms']:.0f} ms",
                flush=True,
            )
            figures |= measure_http(base, str(root / "cert.pem"), args.vms, http_rounds)
            print(
                f"filtered list {figures['list_filtered_ms']:.0f} ms, CSV of {args.vms} VMs "
                f"{figures['csv10k_ms']:.0f} ms; built-in role {figures['role_page_ms']:.0f} ms, "
                f"custom role {figures['role_custom_ms']:.0f} ms, administrator "
                f"{figures['admin_page_ms']:.0f} ms (server-rendered pages, p50)",
                flush=True,
            )
            print(" ".join(f"{name}={figures[name]:.1f}" for name in FIGURES))
    return 0


if __name__ == "__main__":
    run_main(main)
