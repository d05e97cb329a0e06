"""``config_wat_get_list`` / ``config_wat_update`` (a tenant's WAT language and page
size), the WAT and SSL settings over REST, and database config rows applying to the API."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.api.conftest import PASSWORD, Api, World
from tests.api.services.test_ssl_material import _CERT, _KEY, _OTHER_KEY, _ssl_rows


def _wat(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    return api.act("config_wat_get_list", sid=sid, **body)


def test_each_admin_reads_and_changes_its_own_tenants_wat_settings(
    api: Api, world: World, api_engine: Engine
) -> None:
    a, b = world.tenants["A"], world.tenants["B"]
    sid = api.login("adminA", "tenantA")
    assert _wat(api, sid)["rows"] == [{"tenant_id": a, "language": "auto", "block": 10}]
    r = api.act("config_wat_update", sid=sid, arguments={"language": "es", "block": 25})
    assert r["status"] == 0, r
    assert _wat(api, sid)["rows"] == [{"tenant_id": a, "language": "es", "block": 25}]
    assert _wat(api, sid, fields=["block"])["rows"] == [{"block": 25}]
    r = api.act("config_wat_update", sid=sid, arguments={"block": "50"})  # CLI strings
    assert (r["status"], _wat(api, sid)["rows"][0]["block"]) == (0, 50)

    # tenant B stays out of reach
    assert _wat(api, sid, filters={"tenant_id": b})["status"] == 4220
    assert _wat(api, sid, filters={"-or": [{"tenant_id": b}, {"block": 10}]})["status"] == 4220
    r = api.act("config_wat_update", sid=sid, arguments={"language": "en", "tenant_id": b})
    assert r["status"] == 4230, r

    root = api.login("root")
    assert _wat(api, root)["rows"] == [{"tenant_id": 0, "language": "auto", "block": 10}]
    assert _wat(api, root, filters={"tenant_id": b})["rows"] == [
        {"tenant_id": b, "language": "auto", "block": 10}
    ]
    both = _wat(api, root, filters={"tenant_id": [a, b, -1]}, fields=["tenant_id"])
    assert both["rows"] == [{"tenant_id": a}, {"tenant_id": b}]
    r = api.act("config_wat_update", sid=root, arguments={"block": 100, "tenant_id": b})
    assert r["status"] == 0, r
    assert _wat(api, root, filters={"tenant_id": b})["rows"][0]["block"] == 100
    with api_engine.connect() as conn:
        assert conn.execute(
            text("SELECT language, block FROM tenants WHERE id = :a"), {"a": a}
        ).one() == ("es", 50)
        logged = conn.execute(
            text(
                "SELECT object_id, object_name, status FROM audit_log "
                "WHERE action = 'config_wat_update' ORDER BY id"
            )
        ).all()
    assert [tuple(x) for x in logged] == [
        (a, "tenantA", 0),
        (a, "tenantA", 0),
        (None, None, 4230),
        (b, "tenantB", 0),
    ]


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        ({"language": "xx"}, 6320, "language must be one of"),
        ({"block": 0}, 6320, "1..10000"),
        ({"block": 10001}, 6320, "1..10000"),
        ({"block": "many"}, 6320, "'block'"),
        ({}, 6240, "nothing to change"),
        ({"name": "x"}, 6230, "'name'"),
    ],
)
def test_wat_update_refuses_bad_values(
    args: dict[str, Any], status: int, words: str, shared: tuple[Api, World, Engine]
) -> None:
    api, _world, _engine = shared
    r = api.act("config_wat_update", sid=api.login("adminA", "tenantA"), arguments=args)
    assert (r["status"], words in r["message"]) == (status, True), r


def test_superadmins_name_existing_tenants_and_acls_apply(api: Api, world: World) -> None:
    root = api.login("root")
    for tenant_id in (-1, 0xDEAD):
        r = api.act("config_wat_update", sid=root, arguments={"block": 5, "tenant_id": tenant_id})
        assert r["status"] == 7110, r
    assert api.act("config_wat_update", sid=root, arguments={"block": 5})["status"] == 0
    assert _wat(api, root)["rows"][0]["block"] == 5
    sid = api.login("adminA", "tenantA")
    r = api.act("role_create", sid=sid, arguments={"name": "viewer", "__acls__": ["vm.see-main."]})
    assert r["status"] == 0, r
    r = api.act(
        "administrator_create",
        sid=sid,
        arguments={"name": "viewer", "password": PASSWORD, "__roles__": ["viewer"]},
    )
    assert r["status"] == 0, r
    viewer = api.login("viewer", "tenantA")
    assert _wat(api, viewer)["status"] == 4210
    assert api.act("config_wat_update", sid=viewer, arguments={"block": 5})["status"] == 4210
    assert api.act("config_ssl", sid=viewer, arguments={})["status"] == 4210


def test_wat_and_ssl_over_rest(api: Api, world: World, api_engine: Engine) -> None:
    h = api.headers("adminA", "tenantA")
    r = api.client.put("/api/v1/config/wat", json={"language": "en", "block": 30}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"tenant_id": world.tenants["A"], "language": "en", "block": 30}
    assert api.client.get("/api/v1/config/wat", headers=h).json()["rows"] == [r.json()]
    assert api.client.get("/api/v1/config/wat?tenant_id=1", headers=h).status_code == 403
    r = api.client.put("/api/v1/config/wat", json={"block": 30, "tenant_id": 1}, headers=h)
    assert r.status_code == 403
    assert api.client.put("/api/v1/config/wat", json={}, headers=h).status_code == 400
    r = api.client.put("/api/v1/config/ssl", json={"cert": _CERT, "key": _KEY}, headers=h)
    assert r.status_code == 403

    root = api.headers("root")
    b = world.tenants["B"]
    r = api.client.put("/api/v1/config/wat", json={"language": "es", "tenant_id": b}, headers=root)
    assert r.json() == {"tenant_id": b, "language": "es", "block": 10}
    assert api.client.get(f"/api/v1/config/wat?tenant_id={b}", headers=root).json()["total"] == 1
    bad = api.client.put(
        "/api/v1/config/ssl", json={"cert": _CERT, "key": _OTHER_KEY}, headers=root
    )
    assert (bad.status_code, bad.json()["status"]) == (400, 6320)
    r = api.client.put("/api/v1/config/ssl", json={"cert": _CERT, "key": _KEY}, headers=root)
    assert r.status_code == 204, r.text
    assert _ssl_rows(api_engine)["l7r.ssl.cert"] == _CERT


@pytest.mark.slow  # waits for timers (polls, keep-alives, the config re-read)
def test_database_config_rows_apply_to_the_api(
    api: Api, world: World, config: Any, api_engine: Engine
) -> None:
    """config_set changes what the API does: at once in the process that set it, and
    within a few seconds in another API process over the same database."""
    from qvd.api import create_app
    from tests.api.asgi import asgi_client

    root = api.login("root")
    b = world.tenants["B"]
    r = api.act("user_create", sid=root, arguments={"name": "Ann", "password": "x", "tenant_id": b})
    assert r["status"] == 0, r
    with asgi_client(create_app(config, api_engine)) as other_client:
        other = Api(other_client)
        other_root = other.login("root")
        assert other.act("config_get", sid=other_root)["status"] == 0  # reads the rows now
        r = api.act(
            "config_set", sid=root,
            arguments={"key": "model.user.login.case-sensitive", "value": "1", "tenant_id": b},
        )  # fmt: skip
        assert r["status"] == 0, r
        r = api.act(
            "user_create", sid=root, arguments={"name": "Bob", "password": "x", "tenant_id": b}
        )
        assert r["status"] == 0, r
        names = {
            u["name"] for u in api.act("user_get_list", sid=root, filters={"tenant_id": b})["rows"]
        }
        assert {"ann", "Bob"} <= names
        deadline = time.monotonic() + 6
        created = None
        while time.monotonic() < deadline:
            r = other.act("user_create", sid=other_root,
                          arguments={"name": "Cy", "password": "x", "tenant_id": b})  # fmt: skip
            assert r["status"] in (0, 7200), r
            rows = other.act("user_get_list", sid=other_root,
                             filters={"tenant_id": b, "name": "Cy"})["rows"]  # fmt: skip
            if rows:
                created = rows[0]["name"]
                break
            other.act("user_delete", sid=other_root, filters={"tenant_id": b, "name": "cy"})
            time.sleep(0.5)
        assert created == "Cy"
