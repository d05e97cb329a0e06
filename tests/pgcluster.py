"""Two throwaway PostgreSQL clusters in streaming replication, for failover tests.

:func:`replicated_pair` starts a primary (the application role and database made and
migrated), clones it with ``pg_basebackup -R`` into a hot standby on another port,
and yields a :class:`ReplicatedPair`. ``fail_over()`` stops the primary and promotes
the standby, as Patroni would. Replication is synchronous (``remote_write``), so a
commit the primary acknowledged is on the standby before the primary may crash:
failover loses no acknowledged command. Both clusters and their directory go on every
exit path.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import psycopg

from qvd.db import DatabaseTarget, EmbeddedCluster, make_engine, upgrade
from tests.conftest import free_port, scratch_dir

__all__ = ["ReplicatedPair", "replicated_pair"]

# acknowledged commits reach the standby's memory before the client hears of them (the
# throwaway clusters' synchronous_commit=off, from unsafe_fast, is overridden); the
# standby names are set once the standby streams, or the migration would wait for it
_SYNC = ["-c", "synchronous_commit=remote_write"]


@dataclass
class ReplicatedPair:
    """A primary and its streaming standby (``clusters[0]`` is the first primary)."""

    clusters: tuple[EmbeddedCluster, EmbeddedCluster]
    password: str
    primary_index: int = 0

    @property
    def primary(self) -> EmbeddedCluster:
        return self.clusters[self.primary_index]

    @property
    def standby(self) -> EmbeddedCluster:
        return self.clusters[1 - self.primary_index]

    def target(self, *, session_attrs: str = "read-write") -> DatabaseTarget:
        """The application's multi-host target over loopback TCP (both clusters, in
        their first order, ``target_session_attrs`` as given), as an admin would
        write it."""
        first, second = self.clusters
        return DatabaseTarget(
            {
                "host": "127.0.0.1,127.0.0.1",
                "port": f"{first.port},{second.port}",
                "dbname": first.dbname,
                "user": first.role,
                "password": self.password,
                "target_session_attrs": session_attrs,
                "connect_timeout": "2",
                "application_name": "qvd-test",
            }
        )

    def superuser(self, cluster: EmbeddedCluster) -> DatabaseTarget:
        return cluster.target("postgres", as_superuser=True)

    def wait_streaming(self, timeout: float = 30) -> None:
        """Until the primary's WAL sender streams to the standby."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.superuser(self.primary).connect(autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
            if row is not None and row[0] >= 1:
                return
            time.sleep(0.1)
        raise AssertionError(f"the standby did not stream within {timeout} s")

    def stop_primary(self, mode: Literal["fast", "immediate"] = "immediate") -> None:
        """Stop the primary: ``immediate`` is a crash (no shutdown checkpoint),
        ``fast`` a clean switchover."""
        cluster = self.primary
        cluster._run(
            "stopping the primary",
            [str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.datadir), "-m", mode, "-w", "stop"],
        )

    def promote(self) -> None:
        """Promote the standby (``pg_ctl promote -w``: returns once it accepts writes)."""
        cluster = self.standby
        cluster._run(
            "promoting the standby",
            [str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.datadir), "-w", "promote"],
        )
        self.primary_index = 1 - self.primary_index

    def fail_over(self, mode: Literal["fast", "immediate"] = "immediate") -> None:
        """What Patroni does when the leader dies: the old primary is gone, the standby
        is promoted."""
        self.stop_primary(mode)
        self.promote()

    def is_primary(self, cluster: EmbeddedCluster) -> bool:
        with self.superuser(cluster).connect(autocommit=True) as conn:
            row = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])


def _clone(primary: EmbeddedCluster, standby: EmbeddedCluster) -> None:
    """``pg_basebackup -R`` of ``primary`` into ``standby``'s data directory (streamed
    WAL, a ``standby.signal`` and ``primary_conninfo`` over the primary's socket)."""
    standby.datadir.parent.mkdir(parents=True, exist_ok=True)
    standby._prepare_dir(standby.datadir, 0o700)
    standby._run(
        "pg_basebackup",
        [
            str(standby.bin_dir / "pg_basebackup"),
            *("-h", str(primary.socket_dir), "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(standby.datadir), "-R", "-X", "stream", "-c", "fast", "--no-sync"),
        ],
    )


@contextlib.contextmanager
def replicated_pair(prefix: str) -> Iterator[ReplicatedPair]:
    """A migrated primary and a streaming standby, removed on every exit path."""
    base = scratch_dir(prefix)
    first = EmbeddedCluster(
        datadir=base / "a" / "data",
        socket_dir=base / "a" / "sock",
        port=free_port(),
        unsafe_fast=True,
        extra_options=_SYNC,
    )
    second = EmbeddedCluster(
        datadir=base / "b" / "data",
        socket_dir=base / "b" / "sock",
        port=free_port(),
        unsafe_fast=True,
    )
    (base / "a").mkdir(mode=0o755)
    (base / "b").mkdir(mode=0o755)
    try:
        first.initialize()
        first.start()
        first.ensure_database()
        password = first.password_file.read_text().strip()
        engine = make_engine(first.target())
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        _clone(first, second)
        second.start()
        pair = ReplicatedPair((first, second), password)
        pair.wait_streaming()
        with pair.superuser(first).connect(autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
        yield pair
    finally:
        for cluster in (second, first):
            with contextlib.suppress(Exception):
                cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


def wait_writable(target: DatabaseTarget, timeout: float = 30) -> None:
    """Until ``target`` takes a write (a primary answers)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with target.connect(autocommit=True) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
