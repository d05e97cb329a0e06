"""Nodes, OS flavours and properties in a real browser: an OSF created through the
form, found in the list and opened with its DI and tags; a node's state changing on
screen when the database changes; axe-core clean on every page of the area."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session

from qvd.db.models import Di, DiRuntime, DiTag, HostRuntime
from tests.wat.browser.conftest import (
    BrowserPage,
    LiveWat,
    axe_violations,
    keep_screenshot,
    log_in,
)


def _add_di(live_wat: LiveWat, osf_id: int) -> int:
    """A published DI of ``osf_id`` with its version, ``default`` and ``head`` tags (as
    the world's), written straight to the database the API serves."""
    with Session(live_wat.engine) as s, s.begin():
        di = Di(osf_id=osf_id, path="debian.tar", version="2026-12-05-001", pending_tags=[])
        s.add(di)
        s.flush()
        s.add_all(
            [
                DiTag(di_id=di.id, tag="2026-12-05-001", fixed=True),
                DiTag(di_id=di.id, tag="default"),
                DiTag(di_id=di.id, tag="head"),
            ]
        )
        s.execute(update(DiRuntime).where(DiRuntime.di_id == di.id).values(state="published"))
        return di.id


def test_create_an_osf_find_it_and_see_its_di_and_tags(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    page = browser_page.page
    log_in(browser_page)
    browser_page.goto("/osfs")
    page.click("a#create")  # the list's "New"
    page.wait_for_selector("form#create")
    assert axe_violations(page) == []
    page.select_option("#f-tenant_id", str(live_wat.world.tenants["A"]))
    page.fill("#f-name", "debian")
    page.fill("#f-memory", "512")
    page.fill("#f-user_storage", "50")
    page.click("form#create button[type=submit]")
    page.wait_for_selector("h1:text-is('debian')")
    osf_id = int(page.url.rsplit("/", 1)[1].split("?")[0])
    assert "Created." in page.inner_text("main")

    browser_page.goto("/osfs")
    row = page.locator(f"table#list tr[data-id='{osf_id}']")
    row.wait_for()
    assert row.locator("td[data-field=memory]").inner_text() == "512"
    assert row.locator("td[data-field=tenant_name]").inner_text() == "tenantA"
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "osfs", ("OS flavours", "debian", "osfA", "osfB"))

    di_id = _add_di(live_wat, osf_id)
    row.locator("a", has_text="debian").click()
    page.wait_for_selector("h1:text-is('debian')")
    dis = page.locator("#osf-dis tbody tr[data-id]")
    assert dis.count() == 1
    assert dis.first.locator("td[data-field=version]").inner_text() == "2026-12-05-001"
    assert dis.first.locator("a").get_attribute("href") == f"/dis/{di_id}"
    tags = page.locator("#osf-tags tbody tr")
    assert [tags.nth(i).get_attribute("data-tag") for i in range(tags.count())] == [
        "default",
        "head",
        "2026-12-05-001",
    ]
    assert page.locator("#move-tags").get_attribute("href") == f"/osfs/{osf_id}/tags"
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "osf", ("debian", "default", "head", "Move tags"))

    # edit: the memory changes, the page says so
    page.fill("#edit #f-memory", "768")
    page.click("#edit button[type=submit]")
    page.wait_for_selector("dd[data-field=memory]:text-is('768')")

    # "Move tags" leads to the disk images area's tag page of this OSF
    page.click("#move-tags")
    page.wait_for_url(f"**/osfs/{osf_id}/tags")
    assert "debian" in page.inner_text("h1")


def test_node_state_changes_live(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    page = browser_page.page
    log_in(browser_page)
    host = live_wat.world.host
    browser_page.goto(f"/hosts/{host}")
    state = page.locator("#host-state")
    assert state.inner_text() == "running"
    # the first push comes after the socket subscribed to the database's notifications
    page.wait_for_selector("#host-live[data-live-updated]", state="attached", timeout=30000)
    with Session(live_wat.engine) as s, s.begin():
        s.execute(update(HostRuntime).where(HostRuntime.host_id == host).values(state="lost"))
    page.wait_for_selector("#host-state[data-state=lost]", timeout=30000)
    assert state.inner_text() == "lost"
    with Session(live_wat.engine) as s, s.begin():
        s.execute(update(HostRuntime).where(HostRuntime.host_id == host).values(state="stopping"))
    page.wait_for_selector("#host-state:text-is('stopping')", timeout=30000)
    keep_screenshot(
        page, evidence_dir, "node", ("node1", "stopping", "Virtual machines on this node")
    )

    browser_page.goto("/hosts")
    cell = page.locator(f"table#list tr[data-id='{host}'] td[data-field=state]")
    assert cell.inner_text() == "stopping"
    page.wait_for_selector("table#list[data-live-updated]", state="attached", timeout=30000)
    with Session(live_wat.engine) as s, s.begin():
        s.execute(update(HostRuntime).where(HostRuntime.host_id == host).values(state="running"))
    page.wait_for_selector(
        f"table#list tr[data-id='{host}'] td[data-field=state]:text-is('running')",
        timeout=30000,
    )


def test_every_infra_page_is_accessible(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    page = browser_page.page
    log_in(browser_page)
    world = live_wat.world
    pages = {
        "/hosts": "node1",
        f"/hosts/{world.host}": "Virtual machines on this node",
        "/hosts/new": "New node",
        f"/osfs/{world.osfs['A']}": "osfA",
        "/properties": "propA",
        f"/properties/{world.props['A']}": "propA",
        "/properties/new": "New property",
    }
    for path, text in pages.items():
        browser_page.goto(path)
        page.wait_for_selector("#main")
        assert text in page.inner_text("main"), path
        assert axe_violations(page) == [], path
    keep_screenshot(page, evidence_dir, "property-new", ("New property", "Applies to"))


def test_property_created_and_deleted_with_confirmation(browser_page: BrowserPage) -> None:
    page = browser_page.page
    log_in(browser_page, "adminA", "tenantA")
    browser_page.goto("/properties/new")
    page.fill("#f-key", "building")
    page.check("#f-objects-vm")
    page.uncheck("#f-objects-user")
    page.click("form#create button[type=submit]")
    page.wait_for_selector("h1:text-is('building')")
    applies = page.inner_text("dd[data-field=objects]")
    assert "Virtual machines" in applies
    assert "Users" not in applies
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#delete")
    assert page.locator("h1").inner_text() == "building"  # dismissed: nothing sent
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    page.wait_for_url("**/properties")
    assert "building" not in page.inner_text("table#list")
