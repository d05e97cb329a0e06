"""`initialize_database`: schema, superadmin once, password reset."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from qvd.db import (
    DatabaseTarget,
    administrator_acls,
    initialize_database,
    make_engine,
    reset_admin_password,
    verify_password,
)
from qvd.db.models import Administrator
from qvd.db.seed_acls import ALL_ACLS


def test_init_from_empty_creates_the_superadmin_once(empty_db: DatabaseTarget) -> None:
    engine = make_engine(empty_db)
    try:
        first = initialize_database(engine)
        assert first.migrated_from is None
        assert first.superadmin_password is not None
        second = initialize_database(engine)
        assert second.superadmin_password is None
        assert second.migrated_from == first.schema
        with Session(engine) as session:
            admin = session.scalars(
                select(Administrator).where(Administrator.name == "superadmin")
            ).one()
            assert admin.tenant_id == 0
            assert admin.password is not None
            assert admin.password.startswith("$argon2id$")
            assert verify_password(admin.password, first.superadmin_password)
            assert administrator_acls(session, admin.id) == frozenset(ALL_ACLS)

        new = reset_admin_password(engine, "superadmin")
        with Session(engine) as session:
            stored = session.scalars(
                select(Administrator.password).where(Administrator.name == "superadmin")
            ).one()
        assert verify_password(stored, new)
        assert not verify_password(stored, first.superadmin_password)
        with pytest.raises(LookupError, match="no administrator 'nobody' in tenant 0"):
            reset_admin_password(engine, "nobody")
    finally:
        engine.dispose()
