"""The retry rule of ``qvd.db.failover`` on a real server: a transaction whose
connection dies before COMMIT is run again (and happens once); one whose connection
dies during COMMIT is never re-sent (CommitOutcomeUnknown); a statement refused by
the database is not retried at all."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from qvd.db import (
    CommitOutcomeUnknown,
    ConnectionLimits,
    DatabaseTarget,
    engine_target,
    limited_target,
    lost_connection,
    make_engine,
    run_transaction,
)
from qvd.db.failover import retry_delays

KILL_SELF = "SELECT pg_terminate_backend(pg_backend_pid())"

# a deferred constraint trigger runs inside COMMIT: ending its own backend there cuts
# the connection while COMMIT is in flight, as a primary dying at that moment would
COMMIT_KILLER = """
CREATE TABLE commit_killer (id int);
CREATE FUNCTION commit_killer_fire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER commit_killer_at_commit AFTER INSERT ON commit_killer
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION commit_killer_fire();
"""


def count_tenants(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        query = text("SELECT count(*) FROM tenants WHERE name = :n")
        return int(conn.execute(query, {"n": name}).scalar_one())


def test_lost_before_commit_is_run_again_and_happens_once(engine: Engine) -> None:
    attempts: list[int] = []

    def work(conn: Connection) -> int:
        attempts.append(1)
        tenant = conn.execute(
            text("INSERT INTO tenants (name) VALUES ('retried') RETURNING id")
        ).scalar_one()
        if len(attempts) == 1:  # the connection dies after the write, before COMMIT
            conn.execute(text(KILL_SELF))
        return int(tenant)

    run_transaction(engine, work, wait=5, what="test", sleep=lambda s: None)
    assert len(attempts) == 2
    assert count_tenants(engine, "retried") == 1


def test_lost_during_commit_is_never_sent_again(engine: Engine) -> None:
    with engine.begin() as conn:
        for statement in COMMIT_KILLER.strip().split(";\n"):
            conn.execute(text(statement))
    attempts: list[int] = []

    def work(conn: Connection) -> None:
        attempts.append(1)
        conn.execute(text("INSERT INTO tenants (name) VALUES ('unknown')"))
        conn.execute(text("INSERT INTO commit_killer VALUES (1)"))

    with pytest.raises(CommitOutcomeUnknown, match="during COMMIT; the change may or may not"):
        run_transaction(engine, work, wait=5, what="test", sleep=lambda s: None)
    assert len(attempts) == 1
    # here the server died before committing; the caller re-reads to know
    assert count_tenants(engine, "unknown") == 0


def test_a_refused_statement_is_not_retried(engine: Engine) -> None:
    attempts: list[int] = []

    def work(conn: Connection) -> None:
        attempts.append(1)
        conn.execute(text("INSERT INTO tenants (id, name) VALUES (0, 'again')"))

    with pytest.raises(IntegrityError):
        run_transaction(engine, work, wait=5, what="test", sleep=lambda s: None)
    assert len(attempts) == 1


def test_a_server_that_refuses_the_connection_for_good_is_not_waited_for(
    db: DatabaseTarget,
) -> None:
    """No failover makes a missing database appear: the error comes at once (a
    connect step once waited ``database.failover_wait`` for it, retrying)."""
    pauses: list[float] = []
    gone = make_engine(db.with_dbname("qvd_no_such_database"))
    try:
        with pytest.raises(Exception, match="does not exist") as refused:
            run_transaction(gone, lambda conn: None, wait=5, what="test", sleep=pauses.append)
    finally:
        gone.dispose()
    assert pauses == []
    assert not lost_connection(refused.value)


def test_retries_stop_after_the_wait() -> None:
    delays = retry_delays(15)
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert set(delays[4:]) == {1.0}
    assert 14 <= sum(delays) <= 15
    assert retry_delays(0) == []


def test_failover_limits_make_a_vanished_primary_noticed_without_a_statement_timeout(
    db: DatabaseTarget,
) -> None:
    limited = limited_target(db, ConnectionLimits.for_failover(db))
    assert limited.params["keepalives"] == "1"
    assert limited.params["tcp_user_timeout"] == "10000"
    assert "options" not in limited.params  # no statement timeout is forced on the server
    engine = make_engine(db, limits=ConnectionLimits.for_failover(db))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "0"
        assert engine_target(engine) == limited
    finally:
        engine.dispose()
