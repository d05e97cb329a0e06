"""Open redirect through the WAT's ``next`` parameter: after logging in (or changing
the language or tenant) the WAT goes to ``next`` only when it is a path of this site;
``//evil.example``, ``https://evil.example/…``, ``/\\evil.example`` and the like land on
``/``. Guard: ``qvd.wat.web.safe_next``."""

from __future__ import annotations

import re

from tests.api.conftest import PASSWORD
from tests.wat import conftest as wat_fixtures
from tests.wat.conftest import Wat

wat = wat_fixtures.wat  # the WAT's fixture (an in-process client of the real app)

HOSTILE = (
    "//evil.example",
    "//evil.example/path",
    "https://evil.example/",
    "http://evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "javascript:alert(1)",
    "evil.example",
)


def test_login_next_never_leaves_the_site(wat: Wat) -> None:
    for target in HOSTILE:
        form = wat.client.get("/login", params={"next": target}).text
        hidden = re.search(r'name="next" value="([^"]*)"', form)
        assert hidden is not None
        assert hidden.group(1) == "/", target
        r = wat.client.post(
            "/login",
            data={"login": "root", "password": PASSWORD, "tenant": "*", "next": target},
        )
        assert r.status_code == 303
        assert r.headers["location"] == "/", target


def test_settings_next_never_leaves_the_site(wat: Wat) -> None:
    csrf = wat.login()
    for target in HOSTILE:
        data = {"csrf": csrf, "language": "en", "next": target}
        r = wat.client.post("/settings/language", data=data)
        assert r.status_code == 303
        assert r.headers["location"] == "/", target
        data = {"csrf": csrf, "tenant": "all", "next": target}
        r = wat.client.post("/settings/tenant", data=data)
        assert r.headers["location"] == "/", target


def test_a_path_of_the_site_is_kept(wat: Wat) -> None:
    r = wat.client.post(
        "/login",
        data={"login": "root", "password": PASSWORD, "tenant": "*", "next": "/tenants?q=a"},
    )
    assert r.headers["location"] == "/tenants?q=a"
