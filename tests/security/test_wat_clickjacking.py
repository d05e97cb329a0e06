"""Clickjacking: no WAT page may be framed by another site. Every page the WAT serves
(each GET route, the login page, refusal pages, static files) answers with
``Content-Security-Policy: frame-ancestors 'none'`` and ``X-Frame-Options: DENY``.
Guard: ``qvd.wat.app.SecurityHeaders``."""

from __future__ import annotations

import re

from starlette.routing import Route

from qvd.wat.pages import ROUTERS
from tests.wat import conftest as wat_fixtures
from tests.wat.conftest import Wat

wat = wat_fixtures.wat  # the WAT's fixture (an in-process client of the real app)


def _wat_paths(wat: Wat) -> list[str]:
    """Every GET path of the WAT's routers, ids filled with existing objects."""
    fill = {
        "tenant_id": str(wat.world.tenants["A"]), "vm_id": str(wat.world.vms["A"]),
        "user_id": str(wat.world.users["A"]), "osf_id": str(wat.world.osfs["A"]),
        "di_id": str(wat.world.dis["A"]), "host_id": str(wat.world.host),
        "role_id": str(wat.world.roles["A"]), "admin_id": str(wat.world.admins["A"]),
        "administrator_id": str(wat.world.admins["A"]), "property_id": str(wat.world.props["A"]),
        "key": "l7r.port", "log_id": "1",
    }  # fmt: skip
    paths: set[str] = set()
    for router in ROUTERS:
        for route in router.routes:
            if not isinstance(route, Route) or "GET" not in (route.methods or set()):
                continue
            path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill.get(m.group(1), "1"), route.path)
            paths.add(path)
    return sorted(paths)


def _framing_refused(headers: dict[str, str], path: str) -> None:
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (path, csp)
    assert headers.get("x-frame-options") == "DENY", path


def test_every_wat_page_refuses_to_be_framed(wat: Wat) -> None:
    wat.login()
    paths = _wat_paths(wat)
    assert {"/", "/tenants", "/configs", "/logs", "/login"} <= set(paths)
    for path in [*paths, "/tenants/999999", "/static/css/wat.css", "/static/js/wat.js"]:
        r = wat.client.get(path)
        assert r.status_code < 500, (path, r.status_code)
        _framing_refused(dict(r.headers), path)


def test_pages_without_a_session_refuse_too(wat: Wat) -> None:
    for path in ("/login", "/tenants", "/configs/l7r.port", "/no/such/page"):
        r = wat.client.get(path)
        _framing_refused(dict(r.headers), path)
