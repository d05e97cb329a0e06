"""A screenshot of each main page of the WAT, kept as a test artefact
(``$QVD_TEST_OUTPUT/wat/``) and checked for what it must show: the page's title, an
object of the test world on each list, the object's name on its detail page.

The pages are the ones the WAT links to (its menu, one detail page per list), so the set
grows as areas are built; the lists whose world object is known must show it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.api.test_sessions_history import T0, add_row
from tests.wat.browser.conftest import BrowserPage, LiveWat, keep_screenshot, log_in, wat_pages

# A list page → a name of the test world it shows to the superadmin.
WORLD_NAMES = {
    "/vms": "vmA",
    "/users": "usera",
    "/hosts": "node1",
    "/osfs": "osfA",
    "/dis": "osfA",
    "/administrators": "adminA",
    "/roles": "roleA",
    "/tenants": "tenantA",
    "/properties": "propA",
    "/sessions": "usera",  # the session history row the test adds
}


def shot_name(path: str) -> str:
    return "page" + (re.sub(r"[^a-z0-9]+", "-", path).rstrip("-") or "-dashboard")


def test_screenshots_of_each_main_page(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    # the world has no session history of its own (the L7R writes it): one login
    add_row(live_wat.engine, kind="login", tenant_id=live_wat.world.tenants["A"], login="usera",
            started_at=T0, ended_at=T0)  # fmt: skip
    page = browser_page.page
    browser_page.goto("/login")
    page.wait_for_selector("#login-form")
    kept = [keep_screenshot(page, evidence_dir, "page-login", ("QVD administration", "Log in"))]
    log_in(browser_page)
    pages, _ = wat_pages(browser_page)
    for target in pages:
        if target.kind == "new":
            continue
        browser_page.goto(target.path)
        page.wait_for_load_state("load")
        title = page.inner_text("h1").strip()
        assert title, f"{target.path} has an empty <h1>"
        must_show: tuple[str, ...] = (title,)
        if target.kind == "list":
            page.wait_for_selector("table#list tbody tr[data-id]")
            name = WORLD_NAMES.get(target.path)
            if name:
                must_show += (name,)
                if name not in page.inner_text("table#list"):  # past the first page: search
                    browser_page.goto(f"{target.path}?q={name}")
                    page.wait_for_selector("table#list tbody tr[data-id]")
        elif target.kind == "detail":
            if target.path.rsplit("/", 1)[0] in WORLD_NAMES:  # named objects: name in <h1>
                assert target.name in title, f"{target.path}: <h1> {title!r} lacks {target.name!r}"
            must_show += ("root",)  # the header's administrator: the page is whole
        elif target.kind == "dashboard":
            must_show += ("Virtual machines", "Nodes")
        kept.append(keep_screenshot(page, evidence_dir, shot_name(target.path), must_show))
    kinds = {p.kind for p in pages}
    assert {"dashboard", "list"} <= kinds, kinds
    assert len(kept) >= 3  # login, dashboard, the VM list at least
    assert all(p.stat().st_size > 1000 for p in kept)
