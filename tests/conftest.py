"""Shared fixtures: a throwaway PostgreSQL cluster for the whole session, and a clean
database per test cloned from a migrated template (real PostgreSQL, no mocks)."""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.db import DatabaseTarget, EmbeddedCluster, make_engine, upgrade

TEMPLATE_DB = "qvd_template"
_counter = itertools.count()

# ---- markers (README, "Running the tests") --------------------------------------------
# Tests are marked by what they use, so a new test gets its marks without anyone
# remembering them: ``lxc`` (containers, or the disk images built for them: run under
# the machine's heavy lock), ``root`` (bridges, network namespaces, chroot, chown), and
# ``slow`` (more than a few seconds). ``lxc`` implies the other two.
LXC_FIXTURES = frozenset(
    {"test_image", "test_image_qcow2", "test_base", "lxc_node", "start_container", "tiny_image"}
)
ROOT_FIXTURES = frozenset({"bridge", "bridge_peer", "root_only"})
SLOW_FIXTURES = frozenset({"live_api", "own_cluster", "slapd", "fuzz_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        marks = {mark.name for mark in item.iter_markers()}
        lxc = "lxc" in marks or bool(used & LXC_FIXTURES)
        if lxc and "lxc" not in marks:
            item.add_marker(pytest.mark.lxc)
        if (lxc or used & ROOT_FIXTURES) and "root" not in marks:
            item.add_marker(pytest.mark.root)
        if (lxc or used & SLOW_FIXTURES) and "slow" not in marks:
            item.add_marker(pytest.mark.slow)


# ---- a real browser (the WAT's browser tests, and its attack tests in tests/security) ----
@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    """Playwright, one per test module that drives a browser (the WAT's browser tests
    and its attack tests in tests/security). Not per session: while it lives, its sync
    API keeps an asyncio loop running in the main thread, and any later test that runs
    asyncio there (``asyncio.run``) would fail with "Already running asyncio in this
    thread"; two at once would clash too (see ``tests/wat/browser/conftest.py``)."""
    from tests.wat.browser.conftest import start_playwright

    yield from start_playwright()


@pytest.fixture(scope="module")
def chromium(playwright_driver: Any) -> Iterator[Any]:
    """Debian's Chromium, headless, one per test module that drives a browser."""
    from tests.wat.browser.conftest import launch_chromium

    yield from launch_chromium(playwright_driver)


# ---- disk images -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def test_image_qcow2() -> Path:
    """The ``test`` recipe as a KVM image (qcow2: ext4 ``qvdroot``, /boot/qvd/{vmlinuz,
    initrd.img,cmdline}, systemd starting qvd-vma.service), built once per machine and
    cached like ``test_image`` (keyed by the recipe hash and the format). Run under the
    heavy lock: the first use builds it (about a minute over a cached OS stage)."""
    from qvd.di import ensure_image

    if os.geteuid() != 0:
        pytest.fail("building a disk image needs root (chroot, mkfs of the image)")
    cache = os.environ.get("QVD_TEST_DI_CACHE")  # a separate image cache, if set
    return ensure_image(
        "test",
        progress=lambda p: print(p.render(), flush=True),
        cache=Path(cache) if cache else None,
        fmt="qcow2",
    )


@pytest.fixture
def root_only() -> None:
    """For a test that needs root for a reason no fixture shows (chown, chroot)."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def evidence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests leave evidence (screenshots): $QVD_TEST_OUTPUT when set, otherwise
    pytest's own temporary directory (pytest prunes it, nothing is left under /tmp)."""
    wanted = os.environ.get("QVD_TEST_OUTPUT")
    if not wanted:
        return tmp_path_factory.mktemp("evidence")
    path = Path(wanted)
    path.mkdir(parents=True, exist_ok=True)
    return path


def end_process(proc: subprocess.Popen[Any], grace: float = 5) -> None:
    """End a child we started (and only it, by its PID): SIGTERM, after ``grace``
    seconds SIGKILL; reaped in both cases."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def scratch_dir(prefix: str) -> Path:
    """A temporary directory the ``postgres`` user can traverse (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def throwaway_cluster(prefix: str) -> Iterator[EmbeddedCluster]:
    """A running cluster (fsync off) with its database, on a unix socket and a free
    loopback port, in a ``scratch_dir(prefix)``; the cluster and the directory go on
    every exit path, a failed start included."""
    base = scratch_dir(prefix)
    cluster = EmbeddedCluster(
        datadir=base / "data", socket_dir=base / "sock", port=free_port(), unsafe_fast=True
    )
    try:
        cluster.initialize()
        cluster.start()
        cluster.ensure_database()
        yield cluster
    finally:
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedCluster]:
    """The session's cluster; its role may create the per-test databases."""
    with throwaway_cluster(f"qvd-test-pg-{os.getpid()}-") as cluster:
        with cluster.target("postgres", as_superuser=True).connect(autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(cluster.role)))
        yield cluster


def _admin(cluster: EmbeddedCluster) -> DatabaseTarget:
    return cluster.target("postgres", as_superuser=True)


@pytest.fixture(scope="session")
def template_db(pg_cluster: EmbeddedCluster) -> str:
    """A database migrated to head, used as the template of every test database."""
    with _admin(pg_cluster).connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(TEMPLATE_DB), sql.Identifier(pg_cluster.role)
            )
        )
    engine = make_engine(pg_cluster.target(TEMPLATE_DB))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return TEMPLATE_DB


def create_database(cluster: EmbeddedCluster, template: str | None) -> DatabaseTarget:
    """A new uniquely named database (a copy of ``template``, or empty)."""
    name = f"qvd_test_{os.getpid()}_{next(_counter)}"
    query = sql.SQL("CREATE DATABASE {} OWNER {}").format(
        sql.Identifier(name), sql.Identifier(cluster.role)
    )
    if template is not None:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _admin(cluster).connect(autocommit=True) as conn:
        conn.execute(query)
    return cluster.target(name)


def drop_database(cluster: EmbeddedCluster, target: DatabaseTarget) -> None:
    with _admin(cluster).connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target.dbname))
        )


class DatabasePool:
    """Copies of the template made ahead and dropped behind, on two threads: creating
    and dropping a database costs PostgreSQL ~0.1 s each, which it then spends on the
    other core while a test runs instead of before and after it."""

    def __init__(self, cluster: EmbeddedCluster, template: str, depth: int = 2) -> None:
        self._cluster, self._template = cluster, template
        self._ready: queue.Queue[DatabaseTarget | BaseException] = queue.Queue(maxsize=depth)
        self._spent: queue.Queue[DatabaseTarget | None] = queue.Queue()
        self._closing = threading.Event()
        self._threads = [
            threading.Thread(target=self._make, name="db-pool-make", daemon=True),
            threading.Thread(target=self._drop, name="db-pool-drop", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _make(self) -> None:
        while not self._closing.is_set():
            try:
                made: DatabaseTarget | BaseException = create_database(
                    self._cluster, self._template
                )
            except Exception as exc:  # handed to the test that takes it
                made = exc
            while not self._closing.is_set():
                try:
                    self._ready.put(made, timeout=0.2)
                    break
                except queue.Full:
                    continue
            else:
                if isinstance(made, DatabaseTarget):
                    drop_database(self._cluster, made)

    def _drop(self) -> None:
        while (target := self._spent.get()) is not None:
            drop_database(self._cluster, target)

    def take(self) -> DatabaseTarget:
        made = self._ready.get(timeout=120)
        if isinstance(made, BaseException):
            raise made
        return made

    def give_back(self, target: DatabaseTarget) -> None:
        self._spent.put(target)

    def close(self) -> None:
        self._closing.set()
        self._threads[0].join(60)
        while not self._ready.empty():
            made = self._ready.get_nowait()
            if isinstance(made, DatabaseTarget):
                self._spent.put(made)
        self._spent.put(None)
        self._threads[1].join(120)


@pytest.fixture(scope="session")
def db_pool(pg_cluster: EmbeddedCluster, template_db: str) -> Iterator[DatabasePool]:
    pool = DatabasePool(pg_cluster, template_db)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def db(db_pool: DatabasePool) -> Iterator[DatabaseTarget]:
    """A fresh database at schema head with seed data, dropped after the test."""
    target = db_pool.take()
    try:
        yield target
    finally:
        db_pool.give_back(target)


@pytest.fixture
def empty_db(pg_cluster: EmbeddedCluster) -> Iterator[DatabaseTarget]:
    """A fresh database with no schema at all."""
    target = create_database(pg_cluster, None)
    try:
        yield target
    finally:
        drop_database(pg_cluster, target)


@pytest.fixture
def engine(db: DatabaseTarget) -> Iterator[Engine]:
    eng = make_engine(db)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s
