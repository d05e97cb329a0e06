"""Attack test (issue #12, "names are data, never syntax"): a tenant administrator
tries to smuggle configuration syntax and paths in through names.

The attack on main: the API accepted ``"x\\nlxc.hook.pre-start = /bin/sh -c …"`` as a
VM name, which the HKD wrote raw into the container's LXC configuration, so LXC ran
the hook as root on the node; ``../../etc`` and ``/`` were accepted as logins, which
become a path (``homefs/<login>``) with per-user homes; a property key with a newline
went into the properties handed to the desktop.

This runs the real API server (uvicorn over TLS on loopback) over a real PostgreSQL,
logs in as tenant A's administrator, sends each attack through both faces (``POST
/api`` and ``/api/v1``), create and update, and asserts that each is refused with
QVD's status code and a message that names the rule, and that nothing of it reached
the database."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from qvd.api import api_endpoint
from qvd.db import make_engine
from tests.api.conftest import PASSWORD, World, build_world, running_api

HOOK = "x\nlxc.hook.pre-start = /bin/sh -c 'id > /tmp/pwned-by-a-tenant'"
LOGINS = ("../../etc", "/", "..", "../../root/.ssh")
PROPERTY_KEY = "propA\nlxc.hook.pre-start"


@pytest.fixture
def attacker(db: Any, tmp_path: Path) -> Iterator[tuple[httpx.Client, World, Engine, str]]:
    """A TLS client of the real API server and tenant A's administrator's session."""
    engine = make_engine(db)
    try:
        world = build_world(engine)
        with running_api(tmp_path, engine) as server:
            endpoint = api_endpoint(server.config)
            context = ssl.create_default_context(cafile=str(endpoint.cert))
            with httpx.Client(verify=context, base_url=endpoint.url, timeout=30) as client:
                login = client.post("/api", json={
                    "action": "current_admin_setup", "login": "adminA",
                    "password": PASSWORD, "tenant": "tenantA",
                })  # fmt: skip
                assert login.json()["status"] == 0, login.text
                yield client, world, engine, login.json()["sid"]
    finally:
        engine.dispose()


def _act(client: httpx.Client, sid: str, action: str, **body: Any) -> dict[str, Any]:
    r = client.post("/api", json={"action": action, "sid": sid, **body})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    if data["status"] == 1200:  # a multi-object update: its one failure
        (data,) = data["failures"].values()
    return data


def _count(engine: Engine, query: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(query), params).scalar_one())


def test_an_lxc_hook_in_a_vm_name_is_refused(
    attacker: tuple[httpx.Client, World, Engine, str],
) -> None:
    client, world, engine, sid = attacker
    owner = {"user_id": world.users["A"], "osf_id": world.osfs["A"]}
    r = _act(client, sid, "vm_create", arguments={"name": HOOK, **owner})
    assert r["status"] == 6320, r
    assert "'name'" in r["message"]
    assert "is not a valid VM name: it contains a line break (U+000A)" in r["message"]
    r = _act(client, sid, "vm_update", filters={"id": world.vms["A"]}, arguments={"name": HOOK})
    assert r["status"] == 6320, r
    assert "is not a valid VM name" in r["message"]
    rest = client.post("/api/v1/vms", json={"name": HOOK, **owner},
                       headers={"Authorization": f"Bearer {sid}"})  # fmt: skip
    assert rest.status_code == 400, rest.text
    assert rest.json()["status"] == 6320
    assert "is not a valid VM name" in rest.json()["message"]
    assert _count(engine, "SELECT count(*) FROM vms WHERE name LIKE '%lxc.hook%'") == 0
    assert _count(engine, "SELECT count(*) FROM vms WHERE id = :v AND name = 'vmA'",
                  v=world.vms["A"]) == 1  # fmt: skip


@pytest.mark.parametrize("login", LOGINS)
def test_a_path_as_a_login_is_refused(
    attacker: tuple[httpx.Client, World, Engine, str], login: str
) -> None:
    client, world, engine, sid = attacker
    r = _act(client, sid, "user_create", arguments={"name": login, "password": "pw"})
    assert r["status"] == 6320, r
    assert "is not a valid login" in r["message"]
    r = _act(client, sid, "user_update", filters={"id": world.users["A"]},
             arguments={"name": login})  # fmt: skip
    assert r["status"] == 6320, r
    assert "is not a valid login" in r["message"]
    rest = client.patch(f"/api/v1/users/{world.users['A']}", json={"name": login},
                        headers={"Authorization": f"Bearer {sid}"})  # fmt: skip
    assert rest.status_code == 400, rest.text
    assert rest.json()["status"] == 6320
    assert _count(engine, "SELECT count(*) FROM users WHERE login = :l", l=login) == 0
    assert _count(engine, "SELECT count(*) FROM users WHERE id = :u AND login = 'usera'",
                  u=world.users["A"]) == 1  # fmt: skip


def test_a_property_key_with_a_newline_is_refused(
    attacker: tuple[httpx.Client, World, Engine, str],
) -> None:
    client, world, engine, sid = attacker
    r = _act(client, sid, "property_create", arguments={"key": PROPERTY_KEY})
    assert r["status"] == 6330, r
    assert "is not a valid property key: it contains a line break" in r["message"]
    r = _act(client, sid, "vm_update", filters={"id": world.vms["A"]},
             arguments={"__properties_changes__": {"set": {PROPERTY_KEY: "v"}}})  # fmt: skip
    assert r["status"] == 6330, r
    assert "is not a valid property key" in r["message"]
    r = _act(client, sid, "vm_create", arguments={
        "name": "fine", "user_id": world.users["A"], "osf_id": world.osfs["A"],
        "__properties__": {"propA": "v\nlxc.hook.pre-start = /bin/sh"},
    })  # fmt: skip
    assert r["status"] == 6330, r
    assert "is not a valid property value" in r["message"]
    assert _count(engine, "SELECT count(*) FROM properties_list WHERE key LIKE '%lxc%'") == 0
    assert _count(engine, "SELECT count(*) FROM vm_properties WHERE value LIKE '%lxc%'") == 0
    assert _count(engine, "SELECT count(*) FROM vms WHERE name = 'fine'") == 0
