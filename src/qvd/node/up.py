"""``qvd up``: the all-in-one node in the foreground.

Today it brings up the database (the embedded cluster unless the configuration
points at an external server), applies migrations, creates the superadmin on first
run, prints how to reach everything and runs until SIGINT or SIGTERM, then stops
what it started. Later components (HKD, L7R, API, web tool, demo desktop) join here.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from qvd.config import Config
from qvd.db import (
    EmbeddedCluster,
    EmbeddedClusterError,
    database_target,
    embedded_cluster,
    initialize_database,
    make_engine,
)
from qvd.di import ensure_image

__all__ = ["NodeAlreadyRunning", "UpReport", "bring_up", "run_up"]


class NodeAlreadyRunning(EmbeddedClusterError):
    """Another ``qvd up`` holds this node's lock."""


@dataclass(slots=True)
class UpReport:
    """What ``bring_up`` started, for the summary and for stopping."""

    cluster: EmbeddedCluster | None
    database: str
    schema: str
    superadmin_password: str | None
    demo_image: Path | None = None


class _NodeLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise NodeAlreadyRunning(
                f"another `qvd up` (pid {holder}) is running this node ({self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def bring_up(config: Config, say: Callable[[str], None]) -> UpReport:
    """Start (or reuse) the database and bring its schema to head."""
    target = database_target(config)
    cluster: EmbeddedCluster | None = None
    if target.embedded:
        cluster = embedded_cluster(config)
        say(f"embedded PostgreSQL: data in {cluster.datadir}")
        if cluster.initialize():
            say("  created a new cluster")
        if cluster.is_running():
            say("  already running (left over from an earlier run): reusing it")
        else:
            cluster.start()
            say(f"  started on socket {cluster.socket_dir} and 127.0.0.1:{cluster.port}")
        if cluster.ensure_database():
            say(f"  created role and database {cluster.dbname!r}")
        target = cluster.target()
    engine = make_engine(target)
    try:
        result = initialize_database(engine)
    finally:
        engine.dispose()
    if result.migrated_from != result.schema:
        say(f"schema migrated from {result.migrated_from or 'empty'} to {result.schema}")
    report = UpReport(
        cluster=cluster,
        database=target.describe(),
        schema=result.schema,
        superadmin_password=result.superadmin_password,
    )
    recipe = config.get("node.demo.recipe").strip()
    if recipe:
        say(f"disk image {recipe!r}: building it or reusing the cached one")
        report.demo_image = ensure_image(
            recipe,
            progress=lambda p: say(f"  {p.render()}"),
            cache=config.get_path("path.cache.di"),
        )
        say(f"  {report.demo_image}")
    return report


def _summary(report: UpReport, out: TextIO) -> None:
    print("", file=out)
    print("QVD node is up.", file=out)
    print(f"  database: {report.database} (schema {report.schema})", file=out)
    if report.cluster is not None:
        c = report.cluster
        print(f"  psql:     psql -h {c.socket_dir} -p {c.port} -U {c.role} {c.dbname}", file=out)
        print(f"  TCP:      127.0.0.1:{c.port}, password in {c.password_file}", file=out)
    if report.demo_image is not None:
        print(f"  demo disk image: {report.demo_image}", file=out)
    if report.superadmin_password is not None:
        print("  superadmin (tenant '*') password, shown this once:", file=out)
        print(f"    {report.superadmin_password}", file=out)
        print("  (forgot it? `qvd db admin-password superadmin` makes a new one)", file=out)
    print("Stop with Ctrl-C (SIGINT) or SIGTERM.", file=out, flush=True)


def run_up(config: Config, out: TextIO, stop_event: threading.Event | None = None) -> None:
    """Bring the node up, print the summary, wait for a signal, stop cleanly."""
    stop = stop_event or threading.Event()
    lock = _NodeLock(config.get_path("path.run") / "qvd-up.lock")
    lock.acquire()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    report: UpReport | None = None
    try:
        report = bring_up(config, lambda line: print(line, file=out, flush=True))
        _summary(report, out)
        while not stop.wait(1.0):
            pass
        print("stopping…", file=out, flush=True)
    finally:
        if report is not None and report.cluster is not None:
            report.cluster.stop()
            print("embedded PostgreSQL stopped", file=out, flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.release()
