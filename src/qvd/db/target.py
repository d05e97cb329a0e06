"""Where the database is: from ``QVD_DATABASE_URL`` or the ``database.*`` tokens.

A :class:`DatabaseTarget` holds libpq connection parameters. It builds psycopg
connections and SQLAlchemy engines from them directly, so a password never has to be
spliced into a URL (QVD broke on an ``@`` in a password that way), and ``describe()``
gives a text safe for logs and error messages.

Several hosts (HA PostgreSQL, docs/ha-postgresql.md): libpq takes comma-separated
``host`` and ``port`` lists and, with ``target_session_attrs=read-write``, connects to
the first server that takes writes; every new connection looks again, so after a
failover the next connection finds the new primary without a proxy.
"""

from __future__ import annotations

import os
import re
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

    def endpoints(self) -> list[tuple[str, str]]:
        """(host, port) of every server libpq may try, in its order (one port for all
        hosts when a single one is given, as libpq does)."""
        hosts = self.params.get("host", "localhost").split(",")
        ports = self.params.get("port", "5432").split(",")
        if len(ports) == 1:
            ports = ports * len(hosts)
        return [
            (h.strip() or "localhost", p.strip() or "5432")
            for h, p in zip(hosts, ports, strict=False)
        ]

    def describe(self) -> str:
        """A description with no secret in it (every host, and which one is wanted
        when there are several)."""
        shown = {k: v for k, v in self.params.items() if k not in {"password", "passfile"}}
        where = ", ".join(
            f"socket {host}/.s.PGSQL.{port}" if host.startswith("/") else f"{host}:{port}"
            for host, port in self.endpoints()
        )
        attrs = shown.get("target_session_attrs", "any")
        wanted = f" ({attrs})" if attrs != "any" else ""
        return (
            f"database {shown.get('dbname', '?')!r} as {shown.get('user', '?')!r} "
            f"on {where}{wanted}"
        )


def _from_url(url: str) -> DatabaseTarget:
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except psycopg.ProgrammingError as exc:
        raise ConfigValueError(
            f"{DATABASE_URL_ENV} is not a libpq connection URL or string: {exc}"
        ) from None
    return DatabaseTarget(params)


# what libpq 15 accepts (read-only/standby ones would make a daemon that writes useless)
_SESSION_ATTRS = frozenset({"read-write", "primary", "any"})
# a DNS name or IPv4 address, or an IPv6 address in brackets, then an optional :port
_HOST_ENTRY = re.compile(
    r"^(?:(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}))|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)


def _host_list(value: str, default_port: int) -> tuple[str, str]:
    """``database.host`` (``pg1,pg2:5433,[fd00::3]`` or one socket directory) as
    libpq's ``host`` and ``port`` lists; each entry is checked, never passed raw."""
    if value.startswith("/"):
        if "," in value or any(c.isspace() or c in "'\\=" for c in value):
            raise ConfigValueError(
                f"database.host {value!r}: a socket directory is one absolute path "
                "with no comma, quote, backslash, '=' or blank"
            )
        return value, str(default_port)
    hosts: list[str] = []
    ports: list[str] = []
    for entry in value.split(","):
        match = _HOST_ENTRY.match(entry.strip())
        port = int(match["port"]) if match and match["port"] else default_port
        if match is None or not 0 < port < 65536:
            raise ConfigValueError(
                f"database.host {value!r}: {entry.strip()!r} is not a host name or "
                "address with an optional :port (several are separated by commas)"
            )
        hosts.append(match["name"] or match["ipv6"])
        ports.append(str(port))
    return ",".join(hosts), ",".join(ports)


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
    params["host"], params["port"] = _host_list(host, config.get_int("database.port"))
    attrs = config.get("database.target_session_attrs").strip() or "any"
    if attrs not in _SESSION_ATTRS:
        raise ConfigValueError(
            f"database.target_session_attrs is {attrs!r}: use one of "
            + ", ".join(sorted(_SESSION_ATTRS))
        )
    params["target_session_attrs"] = attrs
    password = config.get("database.password")
    if password:
        params["password"] = password
    return DatabaseTarget(params)
