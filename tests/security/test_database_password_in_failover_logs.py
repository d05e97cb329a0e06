"""Attack test: the database password leaking into logs or errors during a failover.

A failover makes every daemon log: lost connections, reconnects, retries, refused
connects to a standby. An operator's journal (and whoever reads it) must never get
the database password from them, nor from the errors the API returns. Two real
clusters in streaming replication; an engine, the L7R's notifier and the retry helper
over the two-host target; the primary crashes and the standby is promoted while a
transaction is in flight. Every log record, and every error raised, is searched for
the password.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, text

from qvd.db import DatabaseUnreachable, make_engine, run_transaction
from qvd.l7r.notify import Notifier
from tests.pgcluster import ReplicatedPair, replicated_pair

pytestmark = pytest.mark.slow


@pytest.fixture
def pair() -> Iterator[ReplicatedPair]:
    with replicated_pair(f"qvd-test-ha-secret-{os.getpid()}-") as made:
        yield made


def test_no_password_in_logs_or_errors_across_a_failover(
    pair: ReplicatedPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    target = pair.target()
    secret = pair.password
    engine = make_engine(target, pool_size=2)
    notifier = Notifier(target, 1, lambda vm_id: None)
    errors: list[str] = []
    notifier.start()
    try:
        cut: list[int] = []

        def work(conn: Connection) -> int:
            if not cut:  # the first attempt is cut by the failover, before COMMIT
                cut.append(1)
                pair.fail_over("immediate")
            return int(conn.execute(text("SELECT inet_server_port()")).scalar_one())

        port = run_transaction(engine, work, wait=15, what="probe", sleep=time.sleep)
        assert port == pair.primary.port
        # a target with no primary at all: the error names the hosts, not the password
        pair.stop_primary("immediate")
        try:
            with make_engine(target).connect() as conn:
                conn.execute(text("SELECT 1"))
        except DatabaseUnreachable as exc:
            errors.append(str(exc))
        time.sleep(2)  # the notifier's failed reconnects are logged meanwhile
    finally:
        notifier.stop()
        engine.dispose()
    assert errors, "connecting with no server up must fail"
    assert "127.0.0.1" in errors[0]
    assert any("reconnecting" in r.getMessage() for r in caplog.records)
    assert any("retrying" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        text_of_record = record.getMessage() + (caplog.text or "")
        assert secret not in text_of_record, record.getMessage()
    for error in errors:
        assert secret not in error
