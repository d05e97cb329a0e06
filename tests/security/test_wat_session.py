"""Session handling of the WAT: once a session has expired or been logged out, every
page sends the browser to the login (nothing of the page is served), and the session
token itself never shows: not in a page, not in a URL the WAT sends the browser to, not
in the server's log records nor in the audit log.

Guards: ``qvd.wat.web.page_for`` (every page needs a live session, checked by the API),
the logout route (ends the session in the database), the token kept only in the
HttpOnly cookie."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest
from sqlalchemy import text
from starlette.routing import Route

from qvd.db import make_engine
from qvd.wat.pages import ROUTERS
from qvd.wat.web import SESSION_COOKIE, SETUP_TTL
from tests.wat import conftest as wat_fixtures
from tests.wat.conftest import Wat

wat = wat_fixtures.wat  # the WAT's fixture (an in-process client of the real app)


def _get_paths(wat: Wat) -> list[str]:
    fill = {"tenant_id": str(wat.world.tenants["A"]), "key": "l7r.port"}
    paths = set()
    for router in ROUTERS:
        for route in router.routes:
            if (
                isinstance(route, Route)
                and "GET" in (route.methods or set())
                and route.path != "/login"
            ):
                paths.add(re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill.get(m.group(1), "1"),
                                     route.path))  # fmt: skip
    return sorted(paths)


def _all_go_to_login(wat: Wat) -> None:
    paths = _get_paths(wat)
    assert {"/", "/tenants", "/tenants/new", "/configs", "/logs"} <= set(paths)
    for path in paths:
        r = wat.client.get(path)
        assert r.status_code == 303, (path, r.status_code)
        assert r.headers["location"].startswith("/login"), path
        assert "<main" not in r.text, path


def test_logged_out_session_sends_every_page_to_the_login(wat: Wat) -> None:
    csrf = wat.login()
    old = wat.client.cookies.get(SESSION_COOKIE)
    assert old
    assert wat.client.get("/tenants").status_code == 200
    assert wat.client.post("/logout", data={"csrf": csrf}).status_code == 303
    _all_go_to_login(wat)
    # the old token (say, a copy an attacker kept) is dead too, with its CSRF token
    wat.client.cookies.set(SESSION_COOKIE, old, path="/")
    _all_go_to_login(wat)
    r = wat.client.post("/tenants/new", data={"csrf": csrf, "name": "after-logout"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")


def test_expired_session_sends_every_page_to_the_login(wat: Wat, db: Any) -> None:
    wat.login()
    assert wat.client.get("/configs").status_code == 200
    engine = make_engine(db)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE api_sessions SET expires = now() - interval '1 second'"))
    finally:
        engine.dispose()
    time.sleep(SETUP_TTL + 0.5)  # the WAT reuses an admin's setup this long
    _all_go_to_login(wat)
    login = wat.client.get("/tenants", follow_redirects=True)
    assert 'id="login-form"' in login.text


def test_the_session_token_never_shows(wat: Wat, db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = wat.client.post("/login", data={"login": "root", "password": "pw-for-tests",
                                        "tenant": "*", "next": "/tenants"})  # fmt: skip
    sid = wat.client.cookies.get(SESSION_COOKIE)
    assert sid
    assert len(sid) >= 20
    seen: list[tuple[str, str]] = [("login redirect", r.headers["location"])]
    for path in [*_get_paths(wat), "/login", "/tenants/999999", "/configs/auth.ldap.bindpass"]:
        page = wat.client.get(path)
        seen.append((path, page.text))
        seen.append((path + " headers", str({k: v for k, v in page.headers.items()
                                              if k != "set-cookie"})))  # fmt: skip
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', wat.client.get("/").text)
    assert csrf is not None
    done = wat.client.post("/tenants/new", data={"csrf": csrf.group(1), "name": "tok"})
    seen.append(("create redirect", done.headers["location"]))
    for where, content in seen:
        assert sid not in content, where
    for record in caplog.records:
        assert sid not in record.getMessage(), record.getMessage()
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM audit_log")).mappings().all()
    finally:
        engine.dispose()
    assert rows
    for row in rows:
        assert sid not in str(dict(row))
