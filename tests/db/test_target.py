"""Finding the database: environment URL, config tokens, embedded default; no secret leaks."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from qvd.config import Config, ConfigValueError, config_from_text
from qvd.db import (
    DATABASE_URL_ENV,
    DatabaseUnreachable,
    EmbeddedCluster,
    database_target,
    make_engine,
)


def test_embedded_by_default() -> None:
    target = database_target(Config(), environ={})
    assert target.embedded
    assert target.params["host"] == "/var/run/qvd/pg"
    assert target.params["port"] == "55432"
    assert target.describe() == "database 'qvd' as 'qvd' on socket /var/run/qvd/pg/.s.PGSQL.55432"


def test_external_from_tokens_keeps_the_password_out_of_descriptions() -> None:
    config = config_from_text(
        "database.host = db.example\ndatabase.port = 6432\ndatabase.user = vdi\n"
        "database.password = p@ss:w/rd\n"
    )
    target = database_target(config, environ={})
    assert not target.embedded
    assert target.params["password"] == "p@ss:w/rd"
    assert "p@ss" not in target.describe()
    assert target.describe() == "database 'qvd' as 'vdi' on db.example:6432 (read-write)"


def test_environment_url_wins_and_takes_unix_sockets() -> None:
    env = {DATABASE_URL_ENV: "postgresql://qvd@/qvddb?host=/run/pg&port=5439"}
    target = database_target(config_from_text("database.host = ignored\n"), environ=env)
    assert target.params == {"user": "qvd", "dbname": "qvddb", "host": "/run/pg", "port": "5439"}


def test_bad_environment_url_says_so() -> None:
    with pytest.raises(ConfigValueError, match=DATABASE_URL_ENV):
        database_target(Config(), environ={DATABASE_URL_ENV: "postgresql://x:y@/?sslmode=bogus&=="})


def test_a_password_with_url_characters_connects_over_tcp(pg_cluster: EmbeddedCluster) -> None:
    """QVD broke on an '@' in the password (it spliced it into a URL); we never do."""
    password = "a@b:c/d?e#f%g"
    with pg_cluster.target("postgres", as_superuser=True).connect(autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS qvd_pw_test")
        conn.execute(
            sql.SQL("CREATE ROLE qvd_pw_test LOGIN PASSWORD {}").format(sql.Literal(password))
        )
    try:
        config = config_from_text(
            f"database.host = 127.0.0.1\ndatabase.port = {pg_cluster.port}\n"
            f"database.user = qvd_pw_test\ndatabase.name = postgres\n"
            f"database.password = {password}\n"
        )
        engine = make_engine(database_target(config, environ={}))
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT current_user").scalar() == "qvd_pw_test"
        engine.dispose()

        wrong = config.with_overrides({"database.password": "nope"})
        engine = make_engine(database_target(wrong, environ={}))
        with pytest.raises(DatabaseUnreachable) as info:
            engine.connect()
        assert "password authentication failed" in str(info.value)
        assert "nope" not in str(info.value)
        engine.dispose()
    finally:
        with pg_cluster.target("postgres", as_superuser=True).connect(autocommit=True) as conn:
            conn.execute("DROP ROLE qvd_pw_test")


def test_unreachable_embedded_database_hints_at_qvd_up() -> None:
    config = Config().with_overrides(
        {"path.database.socket": "/nonexistent-qvd-socket-dir", "database.connect_timeout": "2"}
    )
    engine = make_engine(database_target(config, environ={}))
    with pytest.raises(DatabaseUnreachable, match=r"embedded PostgreSQL: is `qvd up` running\?"):
        engine.connect()
    engine.dispose()


def test_the_embedded_cluster_refuses_passwordless_tcp(pg_cluster: EmbeddedCluster) -> None:
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=pg_cluster.port, user="qvd", dbname="qvd",
                        password="", connect_timeout=5)  # fmt: skip
    password = pg_cluster.password_file.read_text().strip()
    assert oct(pg_cluster.password_file.stat().st_mode & 0o777) == "0o600"
    with psycopg.connect(host="127.0.0.1", port=pg_cluster.port, user="qvd", dbname="qvd",
                         password=password, connect_timeout=5) as conn:  # fmt: skip
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_several_hosts_from_tokens_with_their_own_ports() -> None:
    config = config_from_text(
        "database.host = pg1.example,pg2.example:5433,[fd00::3]\ndatabase.port = 6432\n"
        "database.password = s3cret\n"
    )
    target = database_target(config, environ={})
    assert target.params["host"] == "pg1.example,pg2.example,fd00::3"
    assert target.params["port"] == "6432,5433,6432"
    assert target.params["target_session_attrs"] == "read-write"
    assert target.describe() == (
        "database 'qvd' as 'qvd' on pg1.example:6432, pg2.example:5433, fd00::3:6432 (read-write)"
    )


def test_a_multi_host_url_is_described_host_by_host() -> None:
    url = "postgresql://qvd:pw@pg1:5432,pg2:5433/qvd?target_session_attrs=read-write"
    target = database_target(Config(), environ={DATABASE_URL_ENV: url})
    assert target.params["host"] == "pg1,pg2"
    assert target.params["port"] == "5432,5433"
    assert target.describe() == "database 'qvd' as 'qvd' on pg1:5432, pg2:5433 (read-write)"
    assert "pw" not in target.describe()


def test_session_attrs_may_be_any_for_a_single_server() -> None:
    config = config_from_text("database.host = db\ndatabase.target_session_attrs = any\n")
    target = database_target(config, environ={})
    assert target.params["target_session_attrs"] == "any"
    assert target.describe() == "database 'qvd' as 'qvd' on db:5432"


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("pg1,,pg2", "'' is not a host name"),
        ("pg1:99999", "'pg1:99999' is not a host name"),
        ("pg1 pg2", "'pg1 pg2' is not a host name"),
        ("/run/pg,/run/pg2", "a socket directory is one absolute path"),
    ],
)
def test_bad_host_lists_say_which_entry(host: str, why: str) -> None:
    config = config_from_text(f"database.host = {host}\n")
    with pytest.raises(ConfigValueError, match=why):
        database_target(config, environ={})


def test_bad_session_attrs_are_refused() -> None:
    config = config_from_text("database.host = db\ndatabase.target_session_attrs = standby\n")
    with pytest.raises(ConfigValueError, match="use one of any, primary, read-write"):
        database_target(config, environ={})
