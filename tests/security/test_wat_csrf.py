"""Cross-site request forgery against the WAT, in real Chromium: an administrator is
logged in; a page of another origin auto-submits forms to the WAT's ``/logout``,
``/tenants/new``, ``/users/new`` and ``POST /api`` (a mutating action, as a form and
as a text/plain "JSON" form) and fires a no-cors ``fetch`` with the cookie. All are
refused, nothing is created, the session survives.

The attacker's page is served over HTTPS on another loopback port of 127.0.0.1: the
*same site* as the WAT, so the browser does send the SameSite=Strict cookie and the
anti-CSRF token is the guard (``qvd.wat.web.mutating_page_for`` for the pages,
``qvd.api.shell.state.check_cookie_use`` for ``/api``). A second attacker on another
*site* (``http://localhost``) shows the cookie's ``SameSite=Strict``: a link from there
reaches the WAT without the session (the login page), where ``Lax`` would have sent it.
"""

from __future__ import annotations

import html
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from qvd.db.models import Tenant, User
from tests.security.wat_attacker import ABORTED_ON_LEAVING, attacker_site
from tests.wat.browser import conftest as browser_fixtures
from tests.wat.browser.conftest import BrowserPage, LiveWat, log_in

# the browser fixtures (a real API server over TLS, Debian's Chromium)
live_wat = browser_fixtures.live_wat
browser_page = browser_fixtures.browser_page

VICTIM_USER = "csrfvictim"
VICTIM_TENANT = "csrftenant"


def _form_page(action: str, fields: dict[str, str], enctype: str = "") -> str:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    kind = f' enctype="{enctype}"' if enctype else ""
    return (
        f'<!doctype html><html><body><form id="f" method="post" action="{action}"{kind}>'
        f"{inputs}</form><script>document.getElementById('f').submit()</script></body></html>"
    )


def _pages(wat: str, tenant_id: int) -> dict[str, str]:
    arguments = {"name": VICTIM_USER, "password": "x" * 16, "tenant_id": tenant_id}
    body = json.dumps({"action": "user_create", "arguments": arguments})
    plain_name = body[:-1] + ', "pad": "'  # text/plain sends name=value: the JSON closes in it
    return {
        "/logout": _form_page(f"{wat}/logout", {}),
        "/tenant": _form_page(f"{wat}/tenants/new", {"name": VICTIM_TENANT, "block": "10"}),
        "/user": _form_page(
            f"{wat}/users/new",
            {"name": VICTIM_USER, "password": "x" * 16, "tenant_id": str(tenant_id)},
        ),
        "/api-form": _form_page(
            f"{wat}/api", {"action": "user_create", "arguments": json.dumps(arguments)}
        ),
        "/api-plain": _form_page(f"{wat}/api", {plain_name: '"}'}, enctype="text/plain"),
        "/api-fetch": (
            "<!doctype html><html><body><p id='done'></p><script>"
            f"fetch({json.dumps(wat + '/api')}, {{method: 'POST', mode: 'no-cors', "
            f"credentials: 'include', body: {json.dumps(body)}}})"
            ".finally(() => { document.getElementById('done').textContent = 'sent'; });"
            "</script></body></html>"
        ),
        "/link": (
            "<!doctype html><html><body>"
            f"<a id='go' href={json.dumps(wat + '/tenants')}>go</a></body></html>"
        ),
    }


def _nothing_created(live: LiveWat) -> None:
    with Session(live.engine) as s:
        assert s.scalar(select(User.id).where(User.login == VICTIM_USER)) is None
        assert s.scalar(select(Tenant.id).where(Tenant.name == VICTIM_TENANT)) is None


def _still_logged_in(bp: BrowserPage) -> None:
    bp.goto("/tenants")
    bp.page.wait_for_selector("table#list[data-object=tenant]")
    assert bp.page.locator("#admin-name").inner_text() == "root"


def test_cross_origin_forms_and_fetch_change_nothing(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    bp, page = browser_page, browser_page.page
    bp.allow(ABORTED_ON_LEAVING)
    bp.allow(r"status of 40[345]")  # the WAT's refusals, shown as the forms' results
    bp.allow(r"^requestfailed: \S+/api net::ERR_ABORTED")  # the opaque no-cors answer
    log_in(bp)
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["sid"]["sameSite"] == "Strict"
    assert cookies["sid"]["httpOnly"] is True
    assert cookies["sid"]["secure"] is True
    pages = _pages(live_wat.base, live_wat.world.tenants["A"])
    with attacker_site(pages, certs=live_wat.tmp) as evil:
        assert evil.base != live_wat.base
        for path in ("/logout", "/tenant", "/user", "/api-form", "/api-plain"):
            with page.expect_navigation(url=lambda u: u.startswith(live_wat.base)) as nav:
                page.goto(evil.url(path))
            response = nav.value
            assert response is not None
            if path.startswith("/api"):
                answer = json.loads(page.inner_text("body"))
                assert answer["status"] == 4210, answer
                assert "X-CSRF-Token" in answer["message"]
            else:
                assert response.status in (403, 404, 405), (path, response.status)
            _nothing_created(live_wat)
        page.goto(evil.url("/api-fetch"))
        page.wait_for_selector("#done:has-text('sent')")
        _nothing_created(live_wat)
    _still_logged_in(bp)


def test_another_site_does_not_get_the_session_along(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    bp, page = browser_page, browser_page.page
    bp.allow(ABORTED_ON_LEAVING)
    log_in(bp)
    pages = _pages(live_wat.base, live_wat.world.tenants["A"])
    with attacker_site(pages, host="localhost") as elsewhere:
        page.goto(elsewhere.url("/link"))
        page.click("#go")
        page.wait_for_selector("#login-form")  # the cookie stayed home: log in first
        assert "/login" in page.url
    _still_logged_in(bp)  # the session itself is intact
