"""Session fixation and cookie theft on the user portal: an attacker plants a cookie in
the victim's browser (their own valid session, or a value of their choosing) before
the victim logs in. The login never keeps it: it issues a fresh token, so the
attacker's cookie never becomes the victim's session. The cookie itself is ``Secure``,
``HttpOnly`` (no script reads it), ``SameSite=Strict`` and for ``Path=/``.

Guard: ``qvd.portal.auth.Authority.log_in`` (a new token per login) and
``qvd.portal.app._set_cookie``."""

from __future__ import annotations

from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import COOKIE, PASSWORD, PortalLab

portal_lab = portal_fixtures.portal_lab


def test_the_cookie_flags(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    response = browser.post("/login", {"login": "alice", "password": PASSWORD})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    parts = [p.strip().lower() for p in cookie.split(";")]
    assert parts[0].startswith(f"{COOKIE}=")
    assert "secure" in parts
    assert "httponly" in parts
    assert "samesite=strict" in parts
    assert "path=/" in parts
    assert not any(p.startswith("domain=") for p in parts)


def test_a_planted_session_is_not_kept_by_the_victims_login(portal_lab: PortalLab) -> None:
    attacker = portal_lab.browser()
    attacker.log_in("bob")
    planted = attacker.token
    victim = portal_lab.browser()
    victim.token = planted  # the attacker's cookie in the victim's browser
    response = victim.post("/login", {"login": "alice", "password": PASSWORD})
    assert response.status_code == 303
    fresh = response.cookies[COOKIE]
    assert fresh != planted
    victim.token = fresh
    assert [d["name"] for d in victim.get("/api/desktops").json()] == ["alice-desk"]
    # the attacker's session still sees only bob's: nothing of alice came to it
    assert [d["name"] for d in attacker.get("/api/desktops").json()] == ["bob-desk"]


def test_a_chosen_cookie_value_is_never_a_session(portal_lab: PortalLab) -> None:
    victim = portal_lab.browser()
    victim.token = "attacker-chosen-value-0123456789"
    assert victim.get("/api/desktops").status_code == 401
    victim.post("/login", {"login": "alice", "password": PASSWORD})
    victim.token = "attacker-chosen-value-0123456789"
    assert victim.get("/api/desktops").status_code == 401


def test_each_login_gets_its_own_token(portal_lab: PortalLab) -> None:
    one, two = portal_lab.browser(), portal_lab.browser()
    one.log_in()
    two.log_in()
    assert one.token != two.token
    two.post("/logout", {"csrf": two.csrf})
    assert one.get("/api/desktops").status_code == 200  # one logout ends one session
