"""The list engine in a real browser: filter by a column, select 3 VMs and block them
at once, confirm a delete, save the column choice, keyboard paging; axe-core clean.

The list under test is :data:`tests.wat.listviews.TEST_VIEW` at ``/test-vms`` (the VM
list with mass actions of every kind), served next to the WAT's own pages."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from qvd.db import make_engine
from qvd.wat import app as wat_app
from tests.api.conftest import PASSWORD, build_world, running_api
from tests.wat.browser.conftest import (
    BrowserPage,
    LiveWat,
    axe_violations,
    keep_screenshot,
    log_in,
)
from tests.wat.listviews import extra_router


@pytest.fixture
def live_wat(db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveWat]:
    """The API server with the test list mounted (the WAT's routers plus ours)."""
    monkeypatch.setattr(wat_app, "ROUTERS", (*wat_app.ROUTERS, extra_router()))
    engine = make_engine(db)
    try:
        world = build_world(engine)
        with running_api(tmp_path, engine) as api:
            yield LiveWat(f"https://127.0.0.1:{api.port}", engine, world, tmp_path)
    finally:
        engine.dispose()


def api_call(live: LiveWat, action: str, **body: Any) -> dict[str, Any]:
    """``action`` as root through the API's own face (``POST /api``)."""
    context = ssl.create_default_context(cafile=str(live.tmp / "cert.pem"))
    with httpx.Client(base_url=live.base, verify=context) as client:
        answer: dict[str, Any] = client.post(
            "/api",
            json={"login": "root", "password": PASSWORD, "tenant": "*", "action": action, **body},
        ).json()
    assert answer["status"] in (0, 1200), answer
    return answer


def make_vms(live: LiveWat, prefix: str, count: int) -> list[int]:
    ids = []
    for i in range(count):
        args = {"name": f"{prefix}{i}", "user_id": live.world.users["A"],
                "osf_id": live.world.osfs["A"]}  # fmt: skip
        ids.append(int(api_call(live, "vm_create", arguments=args)["rows"][0]["id"]))
    return ids


def test_mass_block_three_vms(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    ids = make_vms(live_wat, "desk", 3)
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/test-vms")
    page.wait_for_selector("table#list tbody tr[data-id]")
    # filter by the name column: the region is swapped by htmx, the URL keeps the filter
    page.click("#column-filters summary")
    page.fill("#filter-name", "desk")
    expect(page.locator("table#list tbody tr[data-id]")).to_have_count(3)
    assert "f.name=desk" in page.url
    assert axe_violations(page) == []
    # select all on this page, then block
    page.check("#select-all")
    assert page.locator("input[name=ids]:checked").count() == 3
    assert page.inner_text("#selected-count") == "(3)"
    page.click("#mass-block")
    page.wait_for_selector("p.flash.ok")
    assert "Block: 3 done" in page.inner_text("p.flash.ok")
    for vm_id in ids:
        cell = page.locator(f'tr[data-id="{vm_id}"] td[data-field="blocked"]')
        assert cell.inner_text().strip() == "✔"
    rows = api_call(live_wat, "vm_get_list", filters={"id": ids}, fields=["id", "blocked"])
    assert [r["blocked"] for r in rows["rows"]] == [1, 1, 1]
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "lists-mass-block", ("Block: 3 done", "desk0", "desk2"))


def test_confirmed_delete_and_column_choice(browser_page: BrowserPage, live_wat: LiveWat) -> None:
    ids = make_vms(live_wat, "old", 2)
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/test-vms?q=old")
    page.wait_for_selector("table#list tbody tr[data-id]")
    for vm_id in ids:
        page.check(f"#sel-{vm_id}")
    page.click("#mass-delete")
    page.wait_for_selector("#confirm-list")
    assert sorted(page.locator("#confirm-list li").all_inner_texts()) == ["old0", "old1"]
    assert axe_violations(page) == []
    page.click("#confirm-yes")
    page.wait_for_selector("p.flash.ok")
    assert page.locator("table#list tbody tr[data-id]").count() == 0
    # the column choice, with the keyboard only
    page.focus("#columns summary")
    page.keyboard.press("Enter")
    page.focus("#col-user_name")
    page.keyboard.press("Space")
    assert not page.is_checked("#col-user_name")
    page.click("#columns-save")
    page.wait_for_selector("table#list")
    assert page.locator('th[data-field="user_name"]').count() == 0
    assert page.locator('th[data-field="name"]').count() == 1
    assert axe_violations(page) == []


def test_paging_by_keyboard_keeps_live_cells(browser_page: BrowserPage, live_wat: LiveWat) -> None:
    make_vms(live_wat, "pg", 12)
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/vms?f.name=pg")
    page.wait_for_selector("#page-of")
    assert page.inner_text("#page-of") == "Page 1 of 2"
    page.focus("a[rel=next]")
    page.keyboard.press("Enter")
    expect(page.locator("#page-of")).to_have_text("Page 2 of 2")
    assert page.locator("table#list tbody tr[data-id]").count() == 2
    # the swapped table is live again: a change in the database reaches the screen
    page.wait_for_selector("table#list[data-live=open]")
    second = page.locator("table#list tbody tr[data-id]").first.get_attribute("data-id")
    assert second is not None
    api_call(live_wat, "vm_update", filters={"id": int(second)}, arguments={"blocked": True})
    cell = page.locator(f'tr[data-id="{second}"] td[data-field="blocked"]')
    expect(cell).to_have_text("✔", timeout=10000)
