"""Stored cross-site scripting through object names, in real Chromium: a VM, a user, a
tenant, a property and a configuration value whose text is markup (``<script>…`` and
``"><img src=x onerror=…>``, written straight into the database as if an older tool
had let them in) show as text on the list and detail pages, the audit log and the
configuration editor, and no script runs: a marker global stays unset, and no Content
Security Policy violation happens (escaping stops it; CSP is only the second wall).

Guard: Jinja's autoescaping in ``qvd.wat.web.templates`` (no ``|safe`` on data)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from qvd.db.models import Config, PropertyDefinition, Tenant, User, Vm
from tests.security.wat_attacker import ABORTED_ON_LEAVING
from tests.wat.browser import conftest as browser_fixtures
from tests.wat.browser.conftest import BrowserPage, LiveWat, log_in

live_wat = browser_fixtures.live_wat
browser_page = browser_fixtures.browser_page

SCRIPT = "<script>window.__xss=1</script>"
IMAGE = '"><img src=x onerror="window.__xss=2">'
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def _plant(live: LiveWat) -> None:
    w = live.world
    with Session(live.engine) as s, s.begin():
        s.execute(update(Vm).where(Vm.id == w.vms["A"]).values(name=SCRIPT))
        s.execute(update(User).where(User.id == w.users["A"]).values(login=IMAGE))
        s.execute(update(Tenant).where(Tenant.id == w.tenants["B"]).values(name=SCRIPT + "B"))
        s.execute(
            update(PropertyDefinition)
            .where(PropertyDefinition.id == w.props["A"])
            .values(key=IMAGE)
        )
        s.add(Config(tenant_id=-1, key="client.link", value=IMAGE))


def _check(bp: BrowserPage, path: str, shown: tuple[str, ...]) -> bool:
    """Open ``path``; False when the page is not there (an area not built yet)."""
    response = bp.goto(path)
    assert response is not None
    if response.status == 404 and path.split("/")[1] not in ("tenants", "configs", "logs"):
        return False
    assert response.status == 200, (path, response.status)
    page = bp.page
    page.wait_for_load_state("load")
    body = page.inner_text("body")
    for text in shown:
        assert text in body, (path, text)
    state: dict[str, Any] = page.evaluate("() => ({xss: window.__xss, csp: window.__csp})")
    assert state["xss"] is None, (path, state)
    assert state["csp"] == [], (path, state)
    return True


def test_markup_in_names_shows_as_text_and_never_runs(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    bp = browser_page
    bp.allow(ABORTED_ON_LEAVING)
    _plant(live_wat)
    missing: list[str] = []
    bp.page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    bp.page.add_init_script(WATCH)
    log_in(bp)
    w = live_wat.world
    # the superadmin renames nothing but blocks tenant B: the log keeps its hostile name
    bp.goto(f"/tenants/{w.tenants['B']}")
    bp.page.check("#f-blocked")
    bp.page.click("#save")
    bp.page.wait_for_url(f"**/tenants/{w.tenants['B']}")
    must = {
        "/": (),  # the tenant choice lists tenant B by name
        "/tenants": (SCRIPT + "B",),
        f"/tenants/{w.tenants['B']}": (SCRIPT + "B",),
        "/vms": (SCRIPT,),
        "/configs": (IMAGE,),
        "/configs/client.link": (IMAGE,),
        "/logs": (SCRIPT + "B",),
    }
    for path, shown in must.items():
        assert _check(bp, path, shown), path
    entry = bp.page.locator("table#list tr[data-id] td[data-field=time] a").first
    entry.click()
    bp.page.wait_for_selector("#log-arguments")
    assert _check(bp, bp.page.url.removeprefix(live_wat.base), (SCRIPT + "B",))
    optional = {
        f"/vms/{w.vms['A']}": (SCRIPT,),
        "/users": (IMAGE,),
        f"/users/{w.users['A']}": (IMAGE,),
        "/properties": (IMAGE,),
    }
    for path, shown in optional.items():
        _check(bp, path, shown)  # checked wherever the page exists
    optional_urls = {live_wat.base + p for p in optional}
    assert set(missing) <= optional_urls, missing  # nothing else was missing
    if missing:
        bp.allow(r"status of 404")  # the areas not built yet
