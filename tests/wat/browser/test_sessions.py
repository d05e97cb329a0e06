"""The session history page in a real browser: newest first, a column filter, a tenant
administrator's view, axe-core clean, a screenshot kept."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.api.test_sessions_history import T0, add_row
from tests.wat.browser.conftest import (
    BrowserPage,
    LiveWat,
    axe_violations,
    keep_screenshot,
    log_in,
)

ROWS = "table#list tbody tr[data-id]"


def _ids(bp: BrowserPage) -> list[int]:
    bp.page.wait_for_selector("table#list")
    return [int(i) for i in bp.page.locator(ROWS).evaluate_all("rs => rs.map(r => r.dataset.id)")]


def test_the_session_history_page(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    a, b = live_wat.world.tenants["A"], live_wat.world.tenants["B"]
    engine = live_wat.engine
    login = add_row(engine, kind="login", tenant_id=a, login="usera", started_at=T0, ended_at=T0)
    connect = add_row(engine, tenant_id=a, login="usera", vm_name="vmA",
                      started_at=T0 + dt.timedelta(minutes=1),
                      ended_at=T0 + dt.timedelta(minutes=31), end_reason="taken_over",
                      client_address="198.51.100.23")  # fmt: skip
    other = add_row(engine, tenant_id=b, login="userb", vm_name="vmB",
                    started_at=T0 + dt.timedelta(minutes=2))  # fmt: skip
    log_in(browser_page)
    page = browser_page.page
    browser_page.goto("/sessions")
    assert _ids(browser_page) == [other, connect, login]
    assert page.locator(f'tr[data-id="{connect}"] td[data-field="duration"]').inner_text() == (
        "1800"
    )
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "session-history", ("Session history", "198.51.100.23"))
    browser_page.goto("/sessions?f.kind=login")
    assert _ids(browser_page) == [login]

    log_in(browser_page, "adminA", "tenantA")
    browser_page.goto("/sessions")
    assert _ids(browser_page) == [connect, login]
    assert "vmB" not in page.inner_text("body")
