"""Secrets leaking from the user portal: the session token or the password in a URL
(redirects, links, the socket's URL), in a page's source, in the logs, or in clear in
the database. The token travels only in its ``HttpOnly`` cookie; pages hold the
anti-CSRF HMAC, not the token; the database holds its SHA-256; uvicorn's access log is
off and nothing the portal logs holds either.

Guard: ``qvd.portal.auth`` (cookie only, HMAC for CSRF), ``qvd.portal.server``
(``access_log=False``), ``issue_token`` (digest only)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import PASSWORD, PortalLab

portal_lab = portal_fixtures.portal_lab


def test_no_token_or_password_in_urls_pages_logs_or_database(
    portal_lab: PortalLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vm = portal_lab.seed.vm_id
    portal_lab.run_vm(vm)
    browser = portal_lab.browser()
    wrong = browser.post("/login", {"login": "alice", "password": PASSWORD + "-wrong"})
    assert wrong.status_code == 401
    assert PASSWORD + "-wrong" not in wrong.text  # the form is not echoed with the password
    response = browser.post("/login", {"login": "alice", "password": PASSWORD})
    assert response.headers["location"] == "/"
    token = response.cookies["qvd-portal"]
    browser.token = token
    sources = [
        browser.get("/").text,
        browser.get("/api/desktops").text,
        browser.get(f"/desktops/{portal_lab.seed.other_vm}").text,
        browser.act(vm, "stop", csrf="").text,
    ]
    outcome = browser.ws(f"/ws/desktops/{vm}")
    sources += [str(t) for t in outcome.texts]
    for source in sources:
        assert token not in source
        assert PASSWORD not in source
    server_logs = "\n".join(  # the test's own HTTP client logs what it received
        f"{r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "x_start" in server_logs  # the node's logs were captured (the VMA's among them)
    assert token not in server_logs
    assert PASSWORD not in server_logs
    with portal_lab.engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.execute(text("SELECT * FROM user_tokens")).all())
        dump += " ".join(
            str(row) for row in conn.execute(text("SELECT * FROM user_auth_parameters")).all()
        )
    assert token not in dump
    assert PASSWORD not in dump
