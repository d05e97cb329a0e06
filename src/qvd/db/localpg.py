"""The node's embedded PostgreSQL cluster (all-in-one mode, and the test suite's).

Debian's PostgreSQL binaries (``initdb``, ``pg_ctl``) run as an unprivileged system
user (``postgres``): initdb refuses root. The cluster listens on a unix socket in a
directory only root and that user can enter, where local connections are trusted,
and on one loopback TCP port, where a password (SCRAM) is required; the password of
the application role is generated at creation and kept in a root-only file beside
the data directory. Nothing listens beyond loopback.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from qvd.config import Config
from qvd.db.errors import EmbeddedClusterError
from qvd.db.target import DatabaseTarget

__all__ = ["EmbeddedCluster", "embedded_cluster"]


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


@dataclass(slots=True)
class EmbeddedCluster:
    """One PostgreSQL cluster in ``datadir``, run as ``os_user``."""

    datadir: Path
    socket_dir: Path
    port: int
    bin_dir: Path = Path("/usr/lib/postgresql/15/bin")
    os_user: str = "postgres"
    dbname: str = "qvd"
    role: str = "qvd"
    unsafe_fast: bool = False  # fsync off: for throwaway test clusters only
    extra_options: list[str] = field(default_factory=list)

    # ---- paths -------------------------------------------------------------------------
    @property
    def log_file(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.log"

    @property
    def password_file(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.{self.role}.password"

    def target(self, dbname: str | None = None, *, as_superuser: bool = False) -> DatabaseTarget:
        """Connection parameters over the unix socket."""
        params = {
            "host": str(self.socket_dir),
            "port": str(self.port),
            "dbname": dbname or self.dbname,
            "user": "postgres" if as_superuser else self.role,
            "application_name": "qvd",
        }
        return DatabaseTarget(params, embedded=True)

    # ---- running commands as the cluster's user -------------------------------------------
    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", self.os_user, "--", *argv]
        return argv

    def _run(self, step: str, argv: list[str], timeout: float = 120) -> None:
        try:
            proc = subprocess.run(
                self._as_owner(argv), capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError as exc:
            raise EmbeddedClusterError(f"{step}: {exc.filename} is not installed") from None
        except subprocess.TimeoutExpired:
            raise EmbeddedClusterError(f"{step}: no answer after {timeout:.0f} s") from None
        if proc.returncode != 0:
            output = (proc.stderr or proc.stdout).strip()
            raise EmbeddedClusterError(
                f"{step} failed (exit {proc.returncode}): {output}\n"
                f"server log {self.log_file}:\n{_tail(self.log_file)}"
            )

    def _owner_ids(self) -> tuple[int, int]:
        try:
            entry = pwd.getpwnam(self.os_user)
        except KeyError:
            raise EmbeddedClusterError(
                f"system user {self.os_user!r} does not exist: install PostgreSQL "
                "(apt-get install postgresql-15) or set database.embedded.os_user"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _prepare_dir(self, path: Path, mode: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            uid, gid = self._owner_ids()
            os.chown(path, uid, gid)
        path.chmod(mode)

    # ---- lifecycle -------------------------------------------------------------------------
    def is_initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def initialize(self) -> bool:
        """Create the cluster if it does not exist; True if it was created now."""
        if self.is_initialized():
            return False
        for tool in ("initdb", "pg_ctl"):
            if not (self.bin_dir / tool).exists():
                raise EmbeddedClusterError(
                    f"{self.bin_dir / tool} not found: install PostgreSQL 15 "
                    "(apt-get install postgresql-15) or set database.embedded.bin"
                )
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        self._prepare_dir(self.datadir, 0o700)
        argv = [
            str(self.bin_dir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
            "--locale=C.UTF-8",
        ]  # fmt: skip
        if self.unsafe_fast:
            argv.append("--no-sync")
        self._run("initdb", argv)
        return True

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        argv = self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "status"])
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._prepare_dir(self.socket_dir, 0o700)
        options = ["-k", str(self.socket_dir), "-h", "127.0.0.1", "-p", str(self.port)]
        if self.unsafe_fast:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            options += ["-c", "full_page_writes=off"]
        options += self.extra_options
        if os.geteuid() == 0:
            # the log file lives beside the data directory, written by the server's user
            self.log_file.touch(exist_ok=True)
            os.chown(self.log_file, *self._owner_ids())
        self._run(
            f"starting PostgreSQL on port {self.port}",
            [
                *(str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir)),
                *("-l", str(self.log_file), "-w", "-t", "60", "-o", " ".join(options), "start"),
            ],
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended, data is safe)."""
        if not self.is_running():
            return
        self._run(
            "stopping PostgreSQL",
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
        )

    def remove(self) -> None:
        """Stop and delete everything (throwaway clusters)."""
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)
        self.password_file.unlink(missing_ok=True)

    def ensure_database(self) -> bool:
        """Create the application role and database if missing; True if created now."""
        created = False
        admin = self.target("postgres", as_superuser=True)
        with admin.connect(autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [self.role]).fetchone():
                pass
            else:
                password = secrets.token_urlsafe(24)
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(self.role), sql.Literal(password)
                    )
                )
                self._write_password(password)
                created = True
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.dbname]
            ).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.dbname), sql.Identifier(self.role)
                    )
                )
                created = True
        return created

    def _write_password(self, password: str) -> None:
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")

    def wait_connectable(self) -> None:
        """Raise unless a connection over the socket works now."""
        try:
            with self.target("postgres", as_superuser=True).connect() as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            raise EmbeddedClusterError(f"PostgreSQL is not answering: {exc}") from None


def embedded_cluster(config: Config) -> EmbeddedCluster:
    """The node's embedded cluster as the configuration describes it."""
    return EmbeddedCluster(
        datadir=config.get_path("path.database"),
        socket_dir=config.get_path("path.database.socket"),
        port=config.get_int("database.embedded.port"),
        bin_dir=config.get_path("database.embedded.bin"),
        os_user=config.get("database.embedded.os_user"),
        dbname=config.get("database.name"),
        role=config.get("database.user"),
    )
