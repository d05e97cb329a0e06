"""Logging in and out of the WAT, the session cookie's flags, the anti-CSRF token and
the security headers (server side; the browser suite drives the same pages)."""

from __future__ import annotations

from tests.wat.conftest import Wat, csrf_of


def test_pages_need_a_session(wat: Wat) -> None:
    r = wat.client.get("/vms")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fvms"


def test_login_sets_a_strict_httponly_secure_cookie(wat: Wat) -> None:
    r = wat.client.post("/login", data={"login": "root", "password": "pw-for-tests", "tenant": "*"})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "secure" in cookie
    assert "samesite=strict" in cookie
    assert "path=/;" in cookie or cookie.endswith("path=/")
    page = wat.client.get("/vms")
    assert page.status_code == 200
    assert 'data-object="vm"' in page.text
    assert "vmA" in page.text
    assert "vmB" in page.text


def test_wrong_password_says_why_and_answers_401(wat: Wat) -> None:
    r = wat.client.post("/login", data={"login": "root", "password": "nope", "tenant": "*"})
    assert r.status_code == 401
    assert "wrong login, password or tenant" in r.text
    assert "sid=" not in r.headers.get("set-cookie", "")


def test_tenant_admin_sees_only_their_tenant(wat: Wat) -> None:
    wat.login("adminA", "tenantA")
    page = wat.client.get("/vms").text
    assert "vmA" in page
    assert "vmB" not in page


def test_logout_needs_the_csrf_token_and_ends_the_session(wat: Wat) -> None:
    csrf = wat.login()
    assert wat.client.post("/logout").status_code == 403
    assert wat.client.get("/vms").status_code == 200
    r = wat.client.post("/logout", data={"csrf": csrf})
    assert r.status_code == 303
    assert wat.client.get("/vms").status_code == 303


def test_api_refuses_a_cookie_authenticated_change_without_the_token(wat: Wat) -> None:
    csrf = wat.login()
    body = {
        "action": "user_create",
        "arguments": {"name": "eve", "password": "x" * 12, "tenant_id": wat.world.tenants["A"]},
    }
    refused = wat.client.post("/api", json=body)
    assert refused.json()["status"] == 4210
    assert "X-CSRF-Token" in refused.json()["message"]
    done = wat.client.post("/api", json=body, headers={"X-CSRF-Token": csrf})
    assert done.json()["status"] == 0, done.text


def test_every_wat_page_has_a_strict_csp(wat: Wat) -> None:
    wat.login()
    for path in ("/", "/vms", "/login", "/static/css/wat.css"):
        r = wat.client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"


def test_language_is_remembered_per_admin(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.post("/settings/language", data={"csrf": csrf, "language": "es", "next": "/vms"})
    assert r.status_code == 303
    page = wat.client.get("/vms").text
    assert '<html lang="es">' in page
    assert "Máquinas virtuales" in page
    assert csrf_of(page) == csrf
