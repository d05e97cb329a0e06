"""The `qvd` command as a user runs it (a real process, a real database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from qvd.db import DATABASE_URL_ENV, DatabaseTarget, make_engine

# every test starts `qvd` processes (about 2 s of imports each)
pytestmark = pytest.mark.slow


def url_of(target: DatabaseTarget) -> str:
    p = target.params
    return f"postgresql://{p['user']}@/{p['dbname']}?host={p['host']}&port={p['port']}"


def qvd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("QVD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "qvd", *args], capture_output=True, text=True, env=full_env,
        timeout=120, check=False,
    )  # fmt: skip


def test_db_init_status_upgrade(empty_db: DatabaseTarget) -> None:
    env = {DATABASE_URL_ENV: url_of(empty_db)}
    status = qvd("db", "status", env=env)
    assert status.returncode == 3, status.stderr
    assert "schema:    (none: run `qvd db init`)" in status.stdout
    assert "pending migrations:" in status.stdout

    init = qvd("db", "init", env=env)
    assert init.returncode == 0, init.stderr
    assert "superadmin (tenant '*') password, shown this once:" in init.stdout
    password = init.stdout.strip().splitlines()[-1].strip()
    assert len(password) == 20

    again = qvd("db", "init", env=env)
    assert again.returncode == 0
    assert "already initialised" in again.stdout
    assert password not in again.stdout

    status = qvd("db", "status", env=env)
    assert status.returncode == 0
    assert status.stdout.strip().endswith("up to date")
    assert qvd("db", "upgrade", env=env).stdout.strip().endswith("already at 0009")


def test_downgrade_needs_confirmation(db: DatabaseTarget) -> None:
    env = {DATABASE_URL_ENV: url_of(db)}
    refused = qvd("db", "downgrade", "0002", env=env)
    assert refused.returncode == 1
    assert "add --yes to confirm" in refused.stderr
    done = qvd("db", "downgrade", "0002", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("now at 0002")
    engine = make_engine(db)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM acls")).scalar() == 0
    engine.dispose()


def test_bad_config_file_gives_file_line_and_reason(tmp_path: Path) -> None:
    conf = tmp_path / "node.conf"
    conf.write_text("nodename = n1\nl7r.prot = 8443\n")
    result = qvd("db", "status", "--config", str(conf))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"qvd: error: {conf}:2: unknown configuration token 'l7r.prot' (did you mean 'l7r.port'?)"
    )
    check = qvd("config", "check", str(conf))
    assert check.returncode == 1
    assert f"{conf}:2:" in check.stderr
    conf.write_text("nodename = n1\nl7r.port = 8443\n")
    assert qvd("config", "check", str(conf)).stdout.strip() == f"{conf}: OK"
    got = qvd("config", "get", "l7r.port", "--config", str(conf))
    assert got.stdout.strip() == f"l7r.port = 8443    ({conf}:2)"


def test_unreachable_database_is_a_clear_error() -> None:
    result = qvd(
        "db", "status",
        env={DATABASE_URL_ENV: "postgresql://qvd@/qvd?host=/nonexistent-qvd-dir&port=1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(
        "qvd: error: cannot connect to database 'qvd' as 'qvd' on socket /nonexistent-qvd-dir"
    )
    assert "Traceback" not in result.stderr
