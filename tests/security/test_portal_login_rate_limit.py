"""Password guessing through the user portal: the portal is another door to the same
auth chain, so its failed-login limits hold there too. After
``l7r.auth.rate_limit.attempts`` failures from one address even the right password is
refused for a while, naming the reason; guessing session cookies counts as failures
of the address as well.

Guard: ``qvd.portal.auth.Authority`` logs in and checks sessions only through
``core.node.login`` (the chain with its ``LoginLimiter``)."""

from __future__ import annotations

import pytest

from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import PortalLab

portal_lab = portal_fixtures.portal_lab


@pytest.mark.l7r_config(**{"l7r.auth.rate_limit.attempts": "3"})
def test_failed_portal_logins_are_limited(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    statuses = [browser.log_in("bob", "nope").status_code for _ in range(4)]
    assert statuses == [401] * 4
    right = browser.log_in("bob")
    assert right.status_code == 401
    assert "too many failed logins" in right.text


@pytest.mark.l7r_config(**{"l7r.auth.rate_limit.attempts": "3"})
def test_guessed_cookies_are_limited(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    for n in range(5):
        browser.token = f"guess-{n:04d}-{'x' * 30}"
        assert browser.get("/api/desktops").status_code == 401
    right = browser.log_in("bob")
    assert right.status_code == 401
    assert "too many failed logins" in right.text
