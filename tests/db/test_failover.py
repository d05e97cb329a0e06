"""A PostgreSQL failover under the database layer: two real clusters in streaming
replication behind one two-host target (``target_session_attrs=read-write``); the
primary is stopped hard and the standby promoted while an engine's pool and LISTEN
connections are open. The pool, a new LISTEN and the L7R's notifier come back to the
new primary, and nothing acknowledged before the failover is lost."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from qvd.api.faces.notifyhub import NotifyHub, Subscription
from qvd.db import Listener, lost_connection, make_engine
from qvd.db.channels import VM_CHANGED
from qvd.l7r.notify import Notifier
from tests.pgcluster import ReplicatedPair, replicated_pair

pytestmark = pytest.mark.slow

SETUP = """
INSERT INTO tenants (id, name) VALUES (500, 'acme');
INSERT INTO users (id, tenant_id, login) VALUES (600, 500, 'ana');
INSERT INTO osfs (id, tenant_id, name) VALUES (700, 500, 'desk');
INSERT INTO hosts (id, name, address) VALUES (900, 'node1', '10.0.0.2');
INSERT INTO vms (id, name, user_id, osf_id, ip) VALUES (1000, 'ana-1', 600, 700, '10.0.0.100');
INSERT INTO vms (id, name, user_id, osf_id, ip) VALUES (1001, 'ana-2', 600, 700, '10.0.0.101');
"""


@pytest.fixture
def pair() -> Iterator[ReplicatedPair]:
    with replicated_pair(f"qvd-test-ha-{os.getpid()}-") as made:
        engine = make_engine(made.target())
        try:
            with engine.begin() as conn:
                for statement in SETUP.strip().splitlines():
                    conn.execute(text(statement))
        finally:
            engine.dispose()
        yield made


def server_port(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT inet_server_port()")).scalar_one())


def wait_until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def wait_long(listener: Listener) -> None:
    """Wait on ``listener`` for up to 10 s (a dead connection raises at once)."""
    for _ in range(100):
        listener.wait(0.1)


def test_describe_names_every_host_and_no_password(pair: ReplicatedPair) -> None:
    target = pair.target()
    first, second = pair.clusters
    assert target.describe() == (
        f"database 'qvd' as 'qvd' on 127.0.0.1:{first.port}, 127.0.0.1:{second.port} (read-write)"
    )
    assert pair.password not in target.describe()


def test_the_pool_follows_the_failover_and_keeps_what_was_committed(
    pair: ReplicatedPair,
) -> None:
    engine = make_engine(pair.target(), pool_size=3)
    try:
        old_port = pair.primary.port
        # three pooled connections to the old primary, all idle in the pool
        with engine.connect() as a, engine.connect() as b, engine.connect() as c:
            for conn in (a, b, c):
                assert conn.execute(text("SELECT inet_server_port()")).scalar_one() == old_port
        with engine.begin() as conn:
            conn.execute(text("UPDATE vm_runtimes SET vm_cmd = 'start', host_id = 900 "
                              "WHERE vm_id = 1000"))  # fmt: skip
        pair.fail_over("immediate")  # a crash: no shutdown checkpoint

        # the first use after the failover gets a live connection to the new primary
        assert server_port(engine) == pair.primary.port != old_port
        with engine.begin() as conn:
            # acknowledged before the crash: on the new primary (synchronous replication)
            cmd = conn.execute(text("SELECT vm_cmd FROM vm_runtimes WHERE vm_id = 1000"))
            assert cmd.scalar_one() == "start"
            conn.execute(text("UPDATE vm_runtimes SET vm_cmd = 'stop' WHERE vm_id = 1001"))
        with engine.connect() as conn:
            cmd = conn.execute(text("SELECT vm_cmd FROM vm_runtimes WHERE vm_id = 1001"))
            assert cmd.scalar_one() == "stop"
    finally:
        engine.dispose()


def test_a_statement_cut_by_the_failover_fails_loudly_and_the_next_one_works(
    pair: ReplicatedPair,
) -> None:
    engine = make_engine(pair.target(), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
            pair.fail_over("immediate")
            with pytest.raises(DBAPIError) as lost:
                conn.execute(text("SELECT 1"))
            assert lost_connection(lost.value), lost.value
        assert server_port(engine) == pair.primary.port
    finally:
        engine.dispose()


def test_a_new_listener_hears_the_new_primary(pair: ReplicatedPair) -> None:
    target = pair.target()
    engine = make_engine(target)
    try:
        channel = "qvd_cmd_for_vm_on_host900"
        with Listener(target, [channel]) as listener:
            with engine.begin() as conn:
                conn.execute(text("UPDATE vm_runtimes SET host_id = 900, vm_cmd = 'start' "
                                  "WHERE vm_id = 1000"))  # fmt: skip
            assert [n.payload for n in listener.wait(10)] == [{"vm_id": 1000, "cmd": "start"}]
            pair.fail_over("immediate")
            # the old LISTEN connection is dead: waiting on it says so, it never hangs
            with pytest.raises(psycopg.OperationalError):
                wait_long(listener)
        with Listener(target, [channel]) as listener:
            assert listener.connection.info.port == pair.primary.port
            with engine.begin() as conn:
                conn.execute(text("UPDATE vm_runtimes SET host_id = 900, vm_cmd = 'start' "
                                  "WHERE vm_id = 1001"))  # fmt: skip
            assert [n.payload for n in listener.wait(10)] == [{"vm_id": 1001, "cmd": "start"}]
    finally:
        engine.dispose()


def test_the_l7r_notifier_resyncs_after_the_failover(pair: ReplicatedPair) -> None:
    """What was asked while its LISTEN was down reaches the L7R anyway: an abort
    (its notification lost) is acted on, and every waiting connect wakes to re-read."""
    aborted: list[int] = []
    notifier = Notifier(pair.target(), 900, aborted.append)
    notifier.start()
    try:
        seen = notifier.version(1001)
        woke: list[int] = []
        waiter = threading.Thread(
            target=lambda: woke.append(notifier.wait_change(1001, seen, 60)), daemon=True
        )
        waiter.start()
        # an abort for this host whose NOTIFY never came (triggers off), replicated
        admin = pair.primary.target(pair.primary.dbname, as_superuser=True)
        with admin.connect(autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(
                "UPDATE vm_runtimes SET user_state = 'connected', l7r_host_id = 900, "
                "user_cmd = 'abort' WHERE vm_id = 1000"
            )
        time.sleep(0.5)
        assert aborted == []  # no notification: nothing yet
        pair.fail_over("immediate")
        wait_until(lambda: aborted == [1000])
        waiter.join(30)
        assert len(woke) == 1
        assert woke[0] != seen  # woken by the resync, not by a timeout
    finally:
        notifier.stop()


def test_the_api_hub_listens_again_on_the_new_primary(pair: ReplicatedPair) -> None:
    """The API's one LISTEN connection (``NotifyHub``) reconnects to whichever host is
    the primary now (not to the address it first reached), wakes every socket to
    re-run its action (notifications of the gap are lost), then hears new ones."""
    engine = make_engine(pair.target())

    def start_vm(vm_id: int) -> None:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE vm_runtimes SET vm_state = 'starting' WHERE vm_id = :v"),
                {"v": vm_id},
            )

    async def scenario() -> None:
        hub = NotifyHub.for_engine(engine)
        sub = Subscription(channels=frozenset({VM_CHANGED}), tenant_id=None)
        assert await hub.subscribe(sub)
        await asyncio.to_thread(start_vm, 1000)
        await asyncio.wait_for(sub.wake.wait(), 10)
        sub.wake.clear()
        sub.dirty = False
        await asyncio.to_thread(pair.fail_over, "immediate")
        # back: every socket is told to re-run, once LISTEN is active again
        await asyncio.wait_for(sub.wake.wait(), 30)
        for _ in range(300):
            if hub.listening:
                break
            await asyncio.sleep(0.1)
        assert hub.listening
        sub.wake.clear()
        await asyncio.to_thread(start_vm, 1001)
        await asyncio.wait_for(sub.wake.wait(), 10)
        hub.unsubscribe(sub)

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
