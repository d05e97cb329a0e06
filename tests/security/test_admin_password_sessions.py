"""Attack test: an administrator's sessions surviving a password change, and a stolen
session changing the password.

On main changing an administrator's password left every API session of that
administrator alive (a thief's session too), and ``myadmin_update`` changed one's own
password with nothing but the session. Now ``myadmin_update`` needs the current
password (6240 when missing, 3200 when wrong) and ends the administrator's other
sessions, keeping the one that made the change; a superadmin's reset through
``administrator_update`` ends all of the target's sessions. Against the real API
(uvicorn, TLS, PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from tests.api.conftest import PASSWORD, World, build_world
from tests.security.logins import AdminApi, admin_api

EXPIRED = 3300


def _login(api: AdminApi, name: str, password: str = PASSWORD, tenant: str = "tenantA") -> str:
    r = api.act("current_admin_setup", login=name, password=password, tenant=tenant)
    assert r["status"] == 0, r
    return str(r["sid"])


def _status(api: AdminApi, sid: str) -> int:
    return int(api.act("current_admin_setup", sid=sid)["status"])


def test_own_password_change_needs_the_current_one_and_ends_other_sessions(
    tmp_path: Path, engine: Engine
) -> None:
    world = build_world(engine)
    with admin_api(tmp_path, engine) as api:
        mine, thief = _login(api, "adminA"), _login(api, "adminA")
        r = api.act("myadmin_update", sid=thief, arguments={"password": "stolen-1"})
        assert r["status"] == 6240, r  # a session alone cannot change the password
        assert "current_password" in r["message"]
        r = api.act(
            "myadmin_update", sid=thief,
            arguments={"password": "stolen-1", "current_password": "a-guess"},
        )  # fmt: skip
        assert r["status"] == 3200, r
        assert "current password is wrong" in r["message"]
        assert _status(api, thief) == 0  # a wrong try does not end the session either
        r = api.act(
            "myadmin_update", sid=mine,
            arguments={"password": "n3w-Passw0rd", "current_password": PASSWORD},
        )  # fmt: skip
        assert r["status"] == 0, r
        assert _status(api, thief) == EXPIRED
        assert _status(api, mine) == 0  # the session that made the change goes on
        _login(api, "adminA", "n3w-Passw0rd")
        r = api.act("current_admin_setup", login="adminA", password=PASSWORD, tenant="tenantA")
        assert r["status"] == 3200
        # administrator_update on oneself is no way around the current password
        r = api.act(
            "administrator_update", sid=thief, filters={"id": world.admins["A"]},
            arguments={"password": "stolen-2"},
        )  # fmt: skip
        assert r["status"] == EXPIRED  # the thief's session ended with the change
        r = api.act(
            "administrator_update", sid=mine, filters={"id": world.admins["A"]},
            arguments={"password": "stolen-2"},
        )  # fmt: skip
        assert r["status"] in (6240, 1200), r  # refused (1200: per object, reason inside)
        assert "current_password" in str(r), r
        r = api.act(
            "administrator_update", sid=mine, filters={"id": world.admins["A"]},
            arguments={"password": "newer-Passw0rd", "current_password": "n3w-Passw0rd"},
        )  # fmt: skip
        assert r["status"] == 0, r
        assert _status(api, mine) == 0


def test_a_superadmin_reset_ends_all_of_the_targets_sessions(
    tmp_path: Path, engine: Engine
) -> None:
    world: World = build_world(engine)
    with admin_api(tmp_path, engine) as api:
        first, second = _login(api, "adminA"), _login(api, "adminA")
        other = _login(api, "adminB", tenant="tenantB")
        root = _login(api, "root", tenant="*")
        r = api.act(
            "administrator_update", sid=root, filters={"id": world.admins["A"]},
            arguments={"password": "reset-by-root"},
        )  # fmt: skip
        assert r["status"] == 0, r
        assert _status(api, first) == EXPIRED
        assert _status(api, second) == EXPIRED
        assert _status(api, other) == 0  # another administrator's session is untouched
        assert _status(api, root) == 0
        _login(api, "adminA", "reset-by-root")
