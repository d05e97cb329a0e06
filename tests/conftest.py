"""Shared fixtures: a throwaway PostgreSQL cluster for the whole session, and a clean
database per test cloned from a migrated template (real PostgreSQL, no mocks)."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.db import DatabaseTarget, EmbeddedCluster, make_engine, upgrade

TEMPLATE_DB = "qvd_template"
_counter = itertools.count()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scratch_dir(prefix: str) -> Path:
    """A temporary directory the ``postgres`` user can traverse (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedCluster]:
    """One throwaway cluster (fsync off) on a unix socket and a free loopback port."""
    base = scratch_dir(f"qvd-test-pg-{os.getpid()}-")
    cluster = EmbeddedCluster(
        datadir=base / "data", socket_dir=base / "sock", port=free_port(), unsafe_fast=True
    )
    try:
        cluster.initialize()
        cluster.start()
        cluster.ensure_database()
        with cluster.target("postgres", as_superuser=True).connect(autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(cluster.role)))
        yield cluster
    finally:
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


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


@pytest.fixture
def db(pg_cluster: EmbeddedCluster, template_db: str) -> Iterator[DatabaseTarget]:
    """A fresh database at schema head with seed data, dropped after the test."""
    target = create_database(pg_cluster, template_db)
    try:
        yield target
    finally:
        drop_database(pg_cluster, target)


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
