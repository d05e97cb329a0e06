"""Administrator logins renew a password hash made with older argon2 parameters."""

from __future__ import annotations

from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from qvd.db import verify_password
from qvd.db.models import Administrator
from tests.api.conftest import Api, World


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
