"""Where the database is: from ``QVD_DATABASE_URL`` or the ``database.*`` tokens.

A :class:`DatabaseTarget` holds libpq connection parameters. It builds psycopg
connections and SQLAlchemy engines from them directly, so a password never has to be
spliced into a URL (QVD broke on an ``@`` in a password that way), and ``describe()``
gives a text safe for logs and error messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from qvd.config import Config, ConfigValueError

__all__ = ["DATABASE_URL_ENV", "DatabaseTarget", "database_target"]

DATABASE_URL_ENV = "QVD_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """libpq connection parameters (``host`` may be a unix-socket directory)."""

    params: Mapping[str, str] = field(default_factory=dict)
    embedded: bool = False

    def connect(self, **overrides: Any) -> psycopg.Connection[tuple[Any, ...]]:
        """A new psycopg connection (autocommit off unless overridden)."""
        kwargs: dict[str, Any] = dict(self.params)
        kwargs.update(overrides)
        return psycopg.connect(**kwargs)

    def with_dbname(self, dbname: str) -> DatabaseTarget:
        """The same server, another database."""
        return DatabaseTarget({**self.params, "dbname": dbname}, self.embedded)

    @property
    def dbname(self) -> str:
        return self.params.get("dbname", "")

    def describe(self) -> str:
        """A description with no secret in it."""
        shown = {k: v for k, v in self.params.items() if k not in {"password", "passfile"}}
        host = shown.get("host", "localhost")
        port = shown.get("port", "5432")
        where = f"socket {host}/.s.PGSQL.{port}" if host.startswith("/") else f"{host}:{port}"
        return f"database {shown.get('dbname', '?')!r} as {shown.get('user', '?')!r} on {where}"


def _from_url(url: str) -> DatabaseTarget:
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except psycopg.ProgrammingError as exc:
        raise ConfigValueError(
            f"{DATABASE_URL_ENV} is not a libpq connection URL or string: {exc}"
        ) from None
    return DatabaseTarget(params)


def database_target(config: Config, environ: Mapping[str, str] | None = None) -> DatabaseTarget:
    """Where this node's database is.

    ``QVD_DATABASE_URL`` (a libpq URL such as ``postgresql://qvd@/qvd?host=/run/pg``)
    wins. Otherwise ``database.host``: empty means the node's embedded cluster (its
    socket directory ``path.database.socket`` and port ``database.embedded.port``).
    """
    env = os.environ if environ is None else environ
    url = env.get(DATABASE_URL_ENV, "").strip()
    if url:
        return _from_url(url)
    params = {
        "dbname": config.get("database.name"),
        "user": config.get("database.user"),
        "connect_timeout": str(config.get_int("database.connect_timeout")),
        "application_name": "qvd",
    }
    host = config.get("database.host").strip()
    if not host:
        params["host"] = str(config.get_path("path.database.socket"))
        params["port"] = str(config.get_int("database.embedded.port"))
        return DatabaseTarget(params, embedded=True)
    params["host"] = host
    params["port"] = str(config.get_int("database.port"))
    password = config.get("database.password")
    if password:
        params["password"] = password
    return DatabaseTarget(params)
