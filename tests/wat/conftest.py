"""WAT test fixtures: the API's app (the WAT mounted at ``/``) over a fresh database
with the API tests' world (tenants A and B, their admins, users, VMs, a node), an
httpx client that keeps the session cookie like a browser, and the small helpers the
server-side WAT tests share (an engine on the test database, the id a create form
redirected to, a VM set running, an option's value)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from qvd.api import create_app
from qvd.db import make_engine
from qvd.db.models import VmRuntime
from tests.api.asgi import asgi_client
from tests.api.conftest import PASSWORD, World, api_config, build_world

__all__ = [
    "Wat",
    "created_id",
    "csrf_of",
    "open_engine",
    "option_value",
    "serve_wat",
    "set_vm_runtime",
]

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

    def act(self, csrf: str, action: str, **body: Any) -> dict[str, Any]:
        """One API action (``POST /api``) the way the page's own script sends it: the
        session cookie and the anti-CSRF header. The API's answer."""
        r = self.client.post(
            "/api", json={"action": action, **body}, headers={"X-CSRF-Token": csrf}
        )
        answer: dict[str, Any] = r.json()
        return answer

    def assign_property(self, csrf: str, kind: str, tenant: str = "A") -> None:
        """Make the tenant's property ``propA``/``propB`` usable on ``kind`` objects
        (``vm``, ``user``, ``osf``, …): ``<kind>_create_property_list``."""
        answer = self.act(
            csrf, f"{kind}_create_property_list",
            arguments={"property_id": self.world.props[tenant]},
        )  # fmt: skip
        assert answer["status"] == 0, answer

    def mass(self, csrf: str, path: str, op: str, ids: list[str], **inputs: str) -> httpx.Response:
        """A list's mass action ``op`` on ``ids`` (``POST <path>/mass``), with the
        values it asks for (``in.<op>.<name>``)."""
        data: dict[str, Any] = {"csrf": csrf, "op": op, "ids": ids}
        data |= {f"in.{op}.{name}": value for name, value in inputs.items()}
        return self.client.post(f"{path}/mass", data=data)


def created_id(location: str, path: str, done: str = "?done=created") -> int:
    """The id in the redirect a create form answered with (``<path>/<id><done>``)."""
    match = re.fullmatch(rf"{re.escape(path)}/(\d+){re.escape(done)}", location)
    assert match, location
    return int(match.group(1))


def option_value(html: str, name: str) -> int:
    """The value of the ``<option>`` showing ``name`` (an id)."""
    match = re.search(r'<option value="(\d+)">' + re.escape(name) + "</option>", html)
    assert match, f"no option {name!r}"
    return int(match.group(1))


def set_vm_runtime(engine: Engine, vm_id: int, **values: Any) -> None:
    """Change a VM's runtime row as a node would (``vm_state``, ``host_id``, …)."""
    with Session(engine) as s, s.begin():
        s.execute(update(VmRuntime).where(VmRuntime.vm_id == vm_id).values(**values))


@contextlib.contextmanager
def open_engine(db: Any) -> Iterator[Engine]:
    """An engine on the test database ``db``, disposed of at the end."""
    eng = make_engine(db)
    try:
        yield eng
    finally:
        eng.dispose()


@contextlib.contextmanager
def serve_wat(engine: Engine, tmp_path: Path, *routers: APIRouter) -> Iterator[Wat]:
    """The API's app (the WAT at ``/``, plus ``routers``) over ``engine`` with the API
    tests' world built in it, and a client of it."""
    world = build_world(engine)
    app = create_app(api_config(tmp_path), engine)
    for extra in routers:
        app.include_router(extra)
    with asgi_client(app) as client:
        yield Wat(client, world)


@pytest.fixture
def wat(db: Any, tmp_path: Path) -> Iterator[Wat]:
    """The WAT over the API tests' world (usable from other test directories: it needs
    only the ``db`` fixture)."""
    with open_engine(db) as engine, serve_wat(engine, tmp_path) as client:
        yield client
