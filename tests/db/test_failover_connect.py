"""A user's connect in flight during a PostgreSQL failover completes (issue #17).

The real L7R over TLS on the two-host target of two clusters in synchronous streaming
replication (``tests.pgcluster``), a real VMA server (the L7R tests' agent) and a
stand-in for the node's HKD that claims a start command and runs the VM, as the HKD's
rule does (``vm_cmd = 'start' AND vm_state = 'stopped'`` → running). The connect is
held at a step, the primary crashes, the step's retry is seen in the L7R's log (the
hook: no sleep decides anything), the standby is promoted: the connect answers 101 and
relays, the VM was asked to start once (a trigger counts the requests, on both
clusters through replication), the session row is the connect's and is released at
the end, and the history has the connect's row, ``ok`` and closed.

A COMMIT whose answer is lost (the primary died between its commit and its reply) is
reproduced at each of the connect's claims with ``tests.db.ackloss`` on one cluster:
the claim is read back, not made twice. And with no primary within
``database.failover_wait`` the connect is answered 503 with the reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget, EmbeddedCluster, make_engine
from tests.conftest import scratch_dir
from tests.db.ackloss import AckLossProxy
from tests.db.inflight_stage import (
    WAIT,
    Desk,
    completed,
    connecting,
    desk,
    wait_for,
    watching_retries,
)
from tests.db.test_failover_ackloss import through
from tests.pgcluster import ReplicatedPair, replicated_pair

pytestmark = pytest.mark.slow


# ---- a failover with the connect in flight -----------------------------------------------
@pytest.fixture
def pair() -> Iterator[ReplicatedPair]:
    with replicated_pair("qvd-test-pg-inflight-") as made:
        yield made


@pytest.fixture
def run() -> Iterator[Path]:
    path = scratch_dir("qvd-test-inflight-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as made:
        yield made


@pytest.fixture
def on_pair(pair: ReplicatedPair, run: Path) -> Iterator[tuple[ReplicatedPair, Desk]]:
    engine = make_engine(pair.target())
    try:
        with desk(pair.target(), engine, run, **{"database.failover_wait": "60"}) as made:
            yield pair, made
    finally:
        engine.dispose()


def test_a_connect_waiting_for_its_vm_survives_a_failover(
    on_pair: tuple[ReplicatedPair, Desk], pool: ThreadPoolExecutor
) -> None:
    pair, d = on_pair
    with watching_retries() as retries, connecting(d.lab, pool) as connect:
        # the connect asked for the start and waits for the VM to run
        wait_for(lambda: d.vm_cmd() == "start", "the connect's start request")
        assert not connect.answer.done()
        retries.expect("reading its state")
        pair.stop_primary("immediate")
        assert retries.seen.wait(WAIT), "the waiting connect never met the dead primary"
        pair.promote()
        d.node.allowed.set()  # the node claims the start on the new primary
        completed(d, connect)


def test_a_connect_authenticating_during_a_failover_completes(
    on_pair: tuple[ReplicatedPair, Desk], pool: ThreadPoolExecutor
) -> None:
    pair, d = on_pair
    d.node.allowed.set()
    with watching_retries() as retries:
        retries.expect("authenticating")
        pair.stop_primary("immediate")
        with connecting(d.lab, pool) as connect:
            assert retries.seen.wait(WAIT), "the login never met the dead primary"
            assert not connect.answer.done()
            pair.promote()
            completed(d, connect)


def test_no_primary_within_failover_wait_answers_503_with_the_reason(
    pair: ReplicatedPair, run: Path, pool: ThreadPoolExecutor
) -> None:
    engine = make_engine(pair.target())
    try:
        with desk(pair.target(), engine, run, **{"database.failover_wait": "2"}) as d:
            with connecting(d.lab, pool) as connect:
                wait_for(lambda: d.vm_cmd() == "start", "the connect's start request")
                pair.stop_primary("immediate")  # and no standby is promoted
                head, body, _ = connect.answer.result(WAIT)
            assert head.startswith(b"HTTP/1.1 503"), head
            reason = body.decode()
            assert "under maintenance" in reason, reason
            assert "database" in reason, reason
            # a primary again: the next connect takes the session left behind and runs
            pair.promote()
            d.node.allowed.set()
            with connecting(d.lab, pool) as again:
                head, _, _ = again.answer.result(WAIT)
                assert head.startswith(b"HTTP/1.1 101"), head
            assert d.start_requests() == 1
    finally:
        engine.dispose()


# ---- a claim's COMMIT answered to nobody -------------------------------------------------
CLAIMS = {
    "taking the session": b"SET user_state = 'connecting'",
    "asking for the start": b"vm_cmd = 'start', last_error = NULL",
    "marking the session connected": b"SET user_state = 'connected'",
}


@pytest.mark.parametrize("marker", list(CLAIMS.values()), ids=list(CLAIMS))
def test_a_claim_whose_commit_answer_is_lost_is_read_back_not_made_twice(
    marker: bytes,
    db: DatabaseTarget,
    engine: Engine,
    pg_cluster: EmbeddedCluster,
    run: Path,
    pool: ThreadPoolExecutor,
) -> None:
    with (
        AckLossProxy(pg_cluster.port, marker) as proxy,
        desk(through(proxy, db, pg_cluster), engine, run) as d,
    ):
        d.node.allowed.set()
        proxy.arm()
        with connecting(d.lab, pool) as connect:
            completed(d, connect)
        assert proxy.fired.is_set(), "the claim's COMMIT answer was not swallowed"
