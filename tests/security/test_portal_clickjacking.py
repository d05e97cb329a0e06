"""Clickjacking of the user portal: another site frames the desktops page (or the
session page) and tricks the user into clicking Stop or typing into the desktop. Every
response forbids framing (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``) and
carries a CSP with no inline script or style.

Guard: ``qvd.portal.web.SecurityHeaders``."""

from __future__ import annotations

from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import PortalLab

portal_lab = portal_fixtures.portal_lab


def test_every_response_forbids_framing(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    responses = [
        browser.get("/"),
        browser.post("/login", {"login": "alice", "password": "nope"}),
        browser.get("/static/css/portal.css"),
        browser.get("/static/nothing.css"),
        browser.get("/nowhere"),
        browser.get("/api/desktops"),
    ]
    browser.log_in()
    responses += [
        browser.get("/"),
        browser.get("/api/desktops"),
        browser.get(f"/desktops/{portal_lab.seed.other_vm}"),
        browser.act(portal_lab.seed.vm_id, "start", csrf=""),
    ]
    for response in responses:
        where = f"{response.request.method} {response.request.url.path}"
        csp = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, where
        assert "script-src 'self'" in csp, where
        assert "unsafe-inline" not in csp, where
        assert response.headers.get("x-frame-options") == "DENY", where
        assert response.headers.get("x-content-type-options") == "nosniff", where


def test_pages_have_no_inline_script_or_style(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    pages = [browser.get("/").text]
    browser.log_in()
    pages.append(browser.get("/").text)
    for page in pages:
        assert "<script>" not in page
        assert "style=" not in page
        assert "<style" not in page
        assert " on" + "click=" not in page
