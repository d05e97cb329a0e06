"""Migrations: empty → head matches the models exactly; head → base leaves nothing."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from qvd.db import (
    DatabaseTarget,
    SchemaMismatch,
    make_engine,
    require_current_schema,
    schema_status,
)
from qvd.db import downgrade as db_downgrade
from qvd.db import upgrade as db_upgrade
from qvd.db.models import Base


def _objects(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "tables": conn.scalar(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            ),
            "views": conn.scalar(text("SELECT count(*) FROM pg_views WHERE schemaname = 'public'")),
            "types": conn.scalar(
                text(
                    "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                    "WHERE n.nspname = 'public' AND t.typtype = 'e'"
                )
            ),
            "functions": conn.scalar(
                text(
                    "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = 'public'"
                )
            ),
        }


@pytest.fixture
def empty_engine(empty_db: DatabaseTarget) -> Engine:
    eng = make_engine(empty_db)
    yield eng  # type: ignore[misc]
    eng.dispose()


def test_upgrade_from_empty_matches_the_models(empty_engine: Engine) -> None:
    assert schema_status(empty_engine).current is None
    db_upgrade(empty_engine)
    status = schema_status(empty_engine)
    assert status.up_to_date
    assert status.pending == ()
    with empty_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    tables = set(inspect(empty_engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_downgrade_to_base_removes_everything_and_upgrade_again(empty_engine: Engine) -> None:
    db_upgrade(empty_engine)
    db_downgrade(empty_engine, "base")
    assert _objects(empty_engine) == {"tables": 1, "views": 0, "types": 0, "functions": 0}
    # the one table left is alembic's own version table, now empty
    assert schema_status(empty_engine).current is None
    db_upgrade(empty_engine)
    assert schema_status(empty_engine).up_to_date


def test_each_step_down_and_up(empty_engine: Engine) -> None:
    db_upgrade(empty_engine)
    head = schema_status(empty_engine).head
    for rev in ("0004", "0003", "0002", "0001", "base"):
        db_downgrade(empty_engine, rev)
        assert schema_status(empty_engine).current == (None if rev == "base" else rev)
    db_upgrade(empty_engine)
    assert schema_status(empty_engine).current == head


def test_daemons_refuse_a_schema_they_do_not_match(empty_engine: Engine) -> None:
    with pytest.raises(SchemaMismatch, match="has no QVD schema; run `qvd db init`"):
        require_current_schema(empty_engine, "qvd-hkd")
    db_upgrade(empty_engine, "0002")
    with pytest.raises(
        SchemaMismatch, match=r"at revision 0002 but this software needs 0009 \(7 migration"
    ):
        require_current_schema(empty_engine, "qvd-hkd")
    db_upgrade(empty_engine)
    require_current_schema(empty_engine, "qvd-hkd")
    with empty_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaMismatch, match="revision 9999, which this software does not know"):
        require_current_schema(empty_engine, "qvd-hkd")
