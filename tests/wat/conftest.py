"""WAT test fixtures: the API's app (the WAT mounted at ``/``) over a fresh database
with the API tests' world (tenants A and B, their admins, users, VMs, a node), and an
httpx client that keeps the session cookie like a browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from qvd.api import create_app
from qvd.db import make_engine
from tests.api.asgi import asgi_client
from tests.api.conftest import PASSWORD, World, api_config, build_world

__all__ = ["Wat", "csrf_of"]

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_of(html: str) -> str:
    """The anti-CSRF token a page embeds."""
    match = _CSRF.search(html)
    assert match, "the page has no csrf-token meta"
    return match.group(1)


@dataclass
class Wat:
    """A browser-like client of the WAT (cookies kept)."""

    client: httpx.Client
    world: World

    def login(self, name: str = "root", tenant: str = "*", password: str = PASSWORD) -> str:
        """Log in through the form; the anti-CSRF token of the next page."""
        r = self.client.post(
            "/login", data={"login": name, "password": password, "tenant": tenant, "next": "/"}
        )
        assert r.status_code == 303, r.text
        return csrf_of(self.client.get("/").text)


@pytest.fixture
def wat(db: Any, tmp_path: Path) -> Iterator[Wat]:
    engine = make_engine(db)
    try:
        world = build_world(engine)
        with asgi_client(create_app(api_config(tmp_path), engine)) as client:
            yield Wat(client, world)
    finally:
        engine.dispose()
