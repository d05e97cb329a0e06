"""The worst moment of a failover for a claim: the server commits it and the node never
hears so (a proxy swallows the COMMIT's answer and cuts the connection, as a primary
dying between its commit and its reply would, with a synchronous standby that has the
commit). The retry rule says such a transaction is never re-sent; the next pass
re-reads the rows:

- a VM start claimed that way is found ``starting`` and started: once;
- a node's ``stop`` command claimed that way is acted on anyway (a stop run twice is
  harmless, a stop lost is not)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, EmbeddedCluster
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd
from tests.db.ackloss import AckLossProxy
from tests.hkd.conftest import (
    FakeVma,
    add_host,
    add_vm,
    command,
    hkd_config,
    run_dir,
    started,
    state_of,
    wait_for,
)

__all__ = ["run_dir", "started"]  # the HKD tests' fixtures

pytestmark = pytest.mark.slow

CLAIM_START = b"vm_state = 'starting', vm_state_ts = now()"
CLAIM_HOST_CMD = b"UPDATE host_runtimes h SET cmd = NULL"
# commands come by NOTIFY only (no resync pass within the test)
QUIET = {"internal.hkd.poll.delay": "60"}


def through(proxy: AckLossProxy, db: DatabaseTarget, cluster: EmbeddedCluster) -> DatabaseTarget:
    """``db`` over loopback TCP through ``proxy``."""
    return DatabaseTarget(
        {
            "host": "127.0.0.1",
            "port": str(proxy.port),
            "dbname": db.dbname,
            "user": cluster.role,
            "password": cluster.password_file.read_text().strip(),
            "sslmode": "disable",
            "application_name": "qvd-test-ackloss",
        }
    )


def run_attempts(engine: Engine, vm_id: int) -> int:
    with engine.connect() as conn:
        query = text("SELECT run_attempts FROM vm_counters WHERE vm_id = :v")
        return int(conn.execute(query, {"v": vm_id}).scalar_one())


def test_a_start_whose_commit_answer_is_lost_runs_once(
    db: DatabaseTarget, engine: Engine, pg_cluster: EmbeddedCluster, run_dir: Path,
    started: list[Hkd],
) -> None:  # fmt: skip
    host = add_host(engine)
    vm_id, ip = add_vm(engine)
    vma, backend = FakeVma(alive={ip}), FakeBackend()
    with AckLossProxy(pg_cluster.port, CLAIM_START) as proxy:
        hkd = Hkd(
            hkd_config(run_dir, **QUIET), backend=backend, vma=vma,
            target=through(proxy, db, pg_cluster),
        )  # fmt: skip
        hkd.start()
        started.append(hkd)
        proxy.arm()
        command(engine, vm_id, "start", host.id)
        wait_for(proxy.fired.is_set, 30, "the claim's COMMIT answer swallowed")
        wait_for(lambda: state_of(engine, vm_id) == "running", 30, "the VM running")
        assert backend.calls.count(("start", vm_id)) == 1
        assert run_attempts(engine, vm_id) == 1


def test_a_node_stop_whose_commit_answer_is_lost_is_not_lost(
    db: DatabaseTarget, engine: Engine, pg_cluster: EmbeddedCluster, run_dir: Path,
    started: list[Hkd],
) -> None:  # fmt: skip
    host = add_host(engine)
    with AckLossProxy(pg_cluster.port, CLAIM_HOST_CMD) as proxy:
        hkd = Hkd(
            hkd_config(run_dir, **QUIET), backend=FakeBackend(), vma=FakeVma(),
            target=through(proxy, db, pg_cluster),
        )  # fmt: skip
        hkd.start()
        started.append(hkd)
        proxy.arm()
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE host_runtimes SET cmd = 'stop' WHERE host_id = :h"), {"h": host.id}
            )
        wait_for(proxy.fired.is_set, 30, "the claim's COMMIT answer swallowed")
        with engine.connect() as conn:  # the claim was made: the command is gone
            cmd = conn.execute(
                text("SELECT cmd FROM host_runtimes WHERE host_id = :h"), {"h": host.id}
            ).scalar_one()
        assert cmd is None
        assert hkd.wait(30), "the node's stop was lost with its COMMIT's answer"
