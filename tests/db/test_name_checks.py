"""Migration 0005: the database refuses control, line-break and invisible characters
in the names that reach configuration files and paths, and renames rows an older
version let in instead of stopping the upgrade."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from qvd.db import DatabaseTarget, make_engine
from qvd.db import downgrade as db_downgrade
from qvd.db import upgrade as db_upgrade

ATTACK = "x\nlxc.hook.pre-start = /bin/sh -c id"
COLUMNS = (("tenants", "name"), ("users", "login"), ("osfs", "name"), ("dis", "path"),
           ("vms", "name"))  # fmt: skip


@pytest.fixture
def empty_engine(empty_db: DatabaseTarget) -> Iterator[Engine]:
    eng = make_engine(empty_db)
    try:
        yield eng
    finally:
        eng.dispose()


def _seed_bad_rows(engine: Engine) -> dict[str, int]:
    """Rows with a bad character in every checked column (as 0004 allowed)."""
    with engine.begin() as conn:
        tenant = conn.execute(
            text("INSERT INTO tenants (name) VALUES (:n) RETURNING id"), {"n": "acme\u202eevil"}
        ).scalar_one()
        user = conn.execute(
            text("INSERT INTO users (tenant_id, login) VALUES (:t, :l) RETURNING id"),
            {"t": tenant, "l": "bob\n"},
        ).scalar_one()
        osf = conn.execute(
            text("INSERT INTO osfs (tenant_id, name) VALUES (:t, :n) RETURNING id"),
            {"t": tenant, "n": "osf\x1b[31m"},
        ).scalar_one()
        di = conn.execute(
            text("INSERT INTO dis (osf_id, path, version) VALUES (:o, :p, 'v1') RETURNING id"),
            {"o": osf, "p": "10000-a\rb.tar"},
        ).scalar_one()
        vm = conn.execute(
            text("INSERT INTO vms (name, user_id, osf_id) VALUES (:n, :u, :o) RETURNING id"),
            {"n": ATTACK, "u": user, "o": osf},
        ).scalar_one()
    return {"tenants": tenant, "users": user, "osfs": osf, "dis": di, "vms": vm}


def test_upgrade_renames_bad_rows_then_refuses_new_ones(empty_engine: Engine) -> None:
    db_upgrade(empty_engine, "0004")
    ids = _seed_bad_rows(empty_engine)
    db_upgrade(empty_engine, "0005")
    with empty_engine.connect() as conn:
        names = {
            table: conn.execute(
                text(f"SELECT {column} FROM {table} WHERE id = :i"), {"i": ids[table]}
            ).scalar_one()
            for table, column in COLUMNS
        }
        blocked = conn.execute(
            text("SELECT blocked FROM dis WHERE id = :i"), {"i": ids["dis"]}
        ).scalar_one()
    assert names == {
        "tenants": f"acme_evil-renamed-{ids['tenants']}",
        "users": f"bob_-renamed-{ids['users']}",
        "osfs": f"osf_[31m-renamed-{ids['osfs']}",
        "dis": f"10000-a_b.tar-renamed-{ids['dis']}",
        "vms": f"x_lxc.hook.pre-start = /bin/sh -c id-renamed-{ids['vms']}",
    }
    assert blocked is True
    checks = [
        ("INSERT INTO tenants (name) VALUES (:v)", "t\u2066x"),
        ("UPDATE users SET login = :v", "a\tb"),
        ("UPDATE osfs SET name = :v", "o\u200bsf"),
        ("UPDATE dis SET path = :v", "p\x85.tar"),
        ("UPDATE vms SET name = :v", ATTACK),
    ]
    for statement, value in checks:
        with pytest.raises(IntegrityError, match="_printable"), empty_engine.begin() as conn:
            conn.execute(text(statement), {"v": value})
    # good names, unicode ones included, still go in
    with empty_engine.begin() as conn:
        conn.execute(text("UPDATE vms SET name = :v"), {"v": "Escritorio de José (2)"})
        conn.execute(text("UPDATE users SET login = :v"), {"v": "jo.doe@example.com"})


def test_downgrade_drops_the_checks(empty_engine: Engine) -> None:
    db_upgrade(empty_engine, "0005")
    db_downgrade(empty_engine, "0004")
    with empty_engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (name) VALUES (:n)"), {"n": "a\nb"})
        left = conn.execute(
            text("SELECT count(*) FROM pg_constraint WHERE conname LIKE '%\\_printable'")
        ).scalar_one()
    assert left == 0
