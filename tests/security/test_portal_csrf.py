"""Cross-site request forgery against the user portal: a page of another site makes the
logged-in user's browser POST to ``/api/desktops/{id}/start|stop|restart`` or
``/logout``. Without the page's anti-CSRF token (or with another session's) each is
refused with 403 and nothing changes in the database.

Guard: ``qvd.portal.auth.Authority.csrf_ok`` (HMAC of the session token), checked by
``qvd.portal.desktops`` (``X-CSRF-Token``) and ``qvd.portal.app`` (logout's ``csrf``)."""

from __future__ import annotations

import pytest

from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import PASSWORD, PortalLab

portal_lab = portal_fixtures.portal_lab


@pytest.mark.parametrize("op", ["start", "stop", "restart"])
def test_desktop_operations_need_the_pages_token(portal_lab: PortalLab, op: str) -> None:
    vm = portal_lab.seed.vm_id
    if op != "start":
        portal_lab.run_vm(vm)
    before = portal_lab.runtime(vm)
    victim = portal_lab.browser()
    victim.log_in()
    other = portal_lab.browser()
    other.log_in()  # the same user's other session: its token is not this one's
    assert other.csrf != victim.csrf
    for token in ("", "0" * 64, other.csrf, victim.token):
        response = victim.act(vm, op, csrf=token)
        assert response.status_code == 403, (token, response.text)
        assert "anti-CSRF" in response.json()["error"]
    after = portal_lab.runtime(vm)
    assert (after["vm_cmd"], after["vm_state"], after["host_id"]) == (
        before["vm_cmd"],
        before["vm_state"],
        before["host_id"],
    )


def test_logout_needs_the_pages_token(portal_lab: PortalLab) -> None:
    victim = portal_lab.browser()
    victim.log_in()
    for fields in ({}, {"csrf": "f" * 64}):
        response = victim.post("/logout", fields)
        assert response.status_code == 403
    assert victim.get("/api/desktops").status_code == 200  # still logged in
    assert victim.post("/logout", {"csrf": victim.csrf}).status_code == 303
    assert victim.get("/api/desktops").status_code == 401


def test_login_from_another_sites_page_is_refused(portal_lab: PortalLab) -> None:
    """Login CSRF: an attacker's page posts the attacker's credentials to the portal so
    that the victim works in the attacker's session."""
    victim = portal_lab.browser()
    response = victim.post(
        "/login", {"login": "bob", "password": PASSWORD}, origin="https://attacker.example"
    )
    assert response.status_code == 403
    assert "qvd-portal" not in response.headers.get("set-cookie", "")
    own = victim.post("/login", {"login": "bob", "password": PASSWORD}, origin=victim.base)
    assert own.status_code == 303


def test_cross_site_posts_are_refused_even_with_the_token(portal_lab: PortalLab) -> None:
    victim = portal_lab.browser()
    victim.log_in()
    response = victim.post(
        f"/api/desktops/{portal_lab.seed.vm_id}/start",
        origin="https://attacker.example",
        **{"x-csrf-token": victim.csrf},
    )
    assert response.status_code == 403
    assert portal_lab.runtime(portal_lab.seed.vm_id)["vm_cmd"] is None
