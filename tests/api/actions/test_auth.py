"""Administrator logins: a password hash made with older argon2 parameters is renewed,
and the failed-login limit (``api.login.rate_limit.*``) opens again after its window
and must be configured so it can work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from qvd.api import create_app
from qvd.config import Config
from qvd.db import verify_password
from qvd.db.models import Administrator
from tests.api.conftest import PASSWORD, Api, World, api_config


def test_logins_are_allowed_again_after_the_window(
    limited: tuple[Api, Config], world: World
) -> None:
    api, _ = limited
    for _ in range(2):
        r = api.act("vm_get_list", login="adminA", password="bad", tenant="tenantA")
        assert r["status"] == 3200
    r = api.act("vm_get_list", login="adminA", password=PASSWORD, tenant="tenantA")
    assert r["status"] == 3200
    assert "too many failed logins: try again in 1 s" in r["message"]
    time.sleep(1.1)
    r = api.act("vm_get_list", login="adminA", password=PASSWORD, tenant="tenantA")
    assert r["status"] == 0, r


@pytest.mark.parametrize(
    ("token", "value"),
    [("api.login.rate_limit.window", "0"), ("api.login.rate_limit.attempts", "0")],
)
def test_a_rate_limit_that_cannot_work_is_a_configuration_error(
    tmp_path: Path, api_engine: Engine, token: str, value: str
) -> None:
    from qvd.config import ConfigValueError

    with pytest.raises(ConfigValueError, match=token.rsplit(".", 1)[0]):
        create_app(api_config(tmp_path, **{token: value}), api_engine)


def test_an_older_admin_hash_is_renewed_at_login(
    api: Api, world: World, api_engine: Engine
) -> None:
    old = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash("old-style")
    with Session(api_engine) as session, session.begin():
        session.execute(
            update(Administrator).where(Administrator.name == "adminA").values(password=old)
        )
    for _ in range(2):  # the renewed hash serves the next login too
        r = api.act("current_admin_setup", login="adminA", password="old-style", tenant="tenantA")
        assert r["status"] == 0, r
    with Session(api_engine) as session:
        stored = session.scalar(
            select(Administrator.password).where(Administrator.name == "adminA")
        )
    assert stored is not None
    assert stored != old
    params = extract_parameters(stored)
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19 * 1024, 2, 1)
    assert verify_password(stored, "old-style")
