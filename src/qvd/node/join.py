"""``qvd node join``: a new machine becomes a node of the fleet with one command.

Steps (each says what it did): read the join token (or the database URL) from stdin,
a file or the environment, never from the command line; install what the hypervisor
needs (:func:`qvd.node.bringup.install_needs`, as ``qvd up`` does); consume the token
and register the ``hosts`` row in one transaction (:mod:`qvd.node.joindb`); check the
fleet's L7R certificate against the token's fingerprint; write ``node.conf`` (0600,
values checked and escaped: :mod:`qvd.node.nodeconf`); get the L7R's TLS material
(the fleet's from ``ssl_configs``, else a certificate of its own); then start the HKD
with its L7R: under systemd (the ``qvd-hkd`` unit) when PID 1 is systemd, else in the
foreground, as ``qvd hkd`` runs it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from qvd.config import Config, ConfigError, load_config
from qvd.config.names import HOST_NAME, NameRuleError, check_host_address
from qvd.db import DATABASE_URL_ENV, DatabaseTarget, make_engine, require_current_schema
from qvd.db.errors import DatabaseError
from qvd.hkd.addressing import vm_network
from qvd.l7r.tls import ensure_certificate
from qvd.node.bringup import NodeStartError, install_needs
from qvd.node.joindb import (
    JoinRefused,
    RegisteredHost,
    accept_token,
    register_host_row,
)
from qvd.node.jointoken import JoinToken, JoinTokenError
from qvd.node.nodeconf import NodeConfError, merge_node_conf, render_node_conf

__all__ = [
    "JOIN_TOKEN_ENV",
    "JoinError",
    "JoinResult",
    "database_from_url",
    "join_node",
    "read_secret_argument",
]

JOIN_TOKEN_ENV = "QVD_JOIN_TOKEN"  # noqa: S105 (the variable's name)
_HEADER = (
    "QVD node configuration, written by `qvd node join` (it holds this node's database\n"
    "password: keep it mode 0600). Other settings may be added below; join keeps them."
)


class JoinError(NodeStartError):
    """The join cannot go on; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class JoinResult:
    config: Config
    config_path: Path
    target: DatabaseTarget
    host: RegisteredHost
    cert_sha256: str


def read_secret_argument(
    value: str | None,
    what: str,
    *,
    env: str,
    stdin: Callable[[], str],
    environ: Mapping[str, str] | None = None,
) -> str:
    """A secret given as ``-`` (read from stdin), ``@path`` (a file only the caller
    may read) or, when ``value`` is None, the environment variable ``env``. A literal
    secret on the command line is refused: every user of the machine can read argv."""
    environ = os.environ if environ is None else environ
    if value is None:
        found = environ.get(env, "").strip()
        if not found:
            raise JoinError(f"give the {what} with `-` (stdin), `@FILE` or ${env}")
        return found
    if value == "-":
        text = stdin().strip()
        if not text:
            raise JoinError(f"no {what} on stdin")
        return text
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            st = path.stat()
            if st.st_mode & 0o077:
                raise JoinError(f"{path} is readable by others: chmod 600 it (it holds the {what})")
            return path.read_text().strip()
        except OSError as exc:
            raise JoinError(f"cannot read the {what} from {path}: {exc.strerror}") from None
    raise JoinError(
        f"do not put the {what} on the command line (any user can read it in the process "
        f"list): pass `-` and give it on stdin, `@FILE`, or set ${env}"
    )


def database_from_url(url: str, environ: Mapping[str, str] | None = None) -> DatabaseTarget:
    """The target of a libpq URL; a password comes from it (read from stdin) or
    ``$PGPASSWORD``."""
    environ = os.environ if environ is None else environ
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except psycopg.ProgrammingError:
        raise JoinError("--database: not a libpq URL or connection string") from None
    if "password" not in params and environ.get("PGPASSWORD"):
        params["password"] = environ["PGPASSWORD"]
    for key in ("host", "dbname", "user"):
        if not params.get(key):
            raise JoinError(f"--database: the URL must name the {key}")
    params.setdefault("port", "5432")
    params.setdefault("application_name", "qvd")
    return DatabaseTarget(params)


def _address_towards(db_host: str, db_port: str) -> str:
    """The address this machine uses to reach the database (no packet is sent)."""
    first = db_host.split(",")[0].strip()
    if first.startswith("/"):
        raise JoinError("the database is on a unix socket: say this node's address with --address")
    port = int(db_port.split(",")[0] or "5432")
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(first, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(sockaddr)
            address = str(probe.getsockname()[0])
    except OSError as exc:
        raise JoinError(f"cannot find this node's address towards {first}: {exc}") from None
    if ipaddress.ip_address(address).is_loopback:
        raise JoinError(
            f"this node reaches the database over loopback ({address}): say the address "
            "other nodes and clients reach it at with --address"
        )
    return address


def _check_vm_address(config: Config, address: str) -> None:
    """A node that manages its VM bridge puts its address on it: the address must lie in
    the VM network, below the VMs' first address (as the HKD will check)."""
    if not config.get_bool("vm.network.bridge.manage"):
        return
    network = vm_network(config.get("vm.network.ip.start"), config.get("vm.network.netmask"))
    start = ipaddress.IPv4Address(config.get("vm.network.ip.start"))
    mine = ipaddress.ip_address(address)
    if not isinstance(mine, ipaddress.IPv4Address) or not network.network_address < mine < start:
        raise JoinError(
            f"this node's address {address} must lie in the VM network {network}, below "
            f"vm.network.ip.start {start} (its VM bridge gets it; every node its own): "
            "say it with --address"
        )


def _cert_sha256(cert: Path) -> str:
    pem = cert.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _register_with_url(target: DatabaseTarget, name: str, address: str) -> RegisteredHost:
    engine = make_engine(target)
    try:
        require_current_schema(engine, "qvd node join")
    except DatabaseError as exc:
        raise JoinError(str(exc)) from None
    finally:
        engine.dispose()
    try:
        with target.connect() as conn:
            return register_host_row(conn, name, address, note="registered by qvd node join")
    except psycopg.Error as exc:
        raise JoinError(f"cannot register this node: {exc.diag.message_primary or exc}") from None


def _db_settings(name: str, p: Mapping[str, str]) -> dict[str, str]:
    return {
        "nodename": name,
        "database.host": p["host"],
        "database.port": p.get("port", "5432"),
        "database.name": p["dbname"],
        "database.user": p["user"],
        "database.password": p.get("password", ""),
    }


def join_node(
    base: Config,
    config_path: Path,
    *,
    token: JoinToken | None,
    database: DatabaseTarget | None,
    name: str,
    address: str | None,
    say: Callable[[str], None],
) -> JoinResult:
    """Register this machine as node ``name`` and write its ``node.conf``; the caller
    starts the daemons."""
    try:
        name = HOST_NAME.check(name)
        if token is not None and token.host_name is not None and token.host_name != name:
            raise JoinError(
                f"this token is for a node named {token.host_name!r}: add --name "
                f"{token.host_name} (or make a token for {name!r})"
            )
        if address is None:
            where = token if token is not None else None
            db_host = where.db_host if where else (database.params["host"] if database else "")
            db_port = where.db_port if where else (database.params["port"] if database else "")
            address = _address_towards(db_host, db_port)
        address = check_host_address(address)
    except NameRuleError as exc:
        raise JoinError(str(exc)) from None
    config = base.with_overrides({"nodename": name}, source="qvd node join")
    try:
        _check_vm_address(config, address)
    except (ValueError, ConfigError) as exc:
        raise JoinError(f"the VM network settings are wrong: {exc}") from None
    install_needs(config, say)
    if token is not None:
        # what node.conf will hold is checked before the token is spent
        p = token.connection_params()
        try:
            render_node_conf(_db_settings(name, {**p, "password": "x" * 43}), header="")
        except (NodeConfError, NameRuleError) as exc:
            raise JoinError(f"the token's database settings cannot be written: {exc}") from None
        password = secrets.token_urlsafe(32)
        try:
            host = accept_token(token, name, address, password)
        except (JoinRefused, JoinTokenError) as exc:
            raise JoinError(str(exc)) from None
        say(f"join token accepted: database role {token.role}, its password now this node's")
        params = {**token.connection_params(), "password": password, "application_name": "qvd"}
        target = DatabaseTarget(params)
    else:
        assert database is not None
        target = database
        host = _register_with_url(target, name, address)
    what = "registered" if host.created else "re-registered (it was stopped)"
    say(f"node {name!r}: host {host.host_id} at {address} {what}")
    try:
        merge_node_conf(config_path, _db_settings(name, target.params), header=_HEADER)
    except (NodeConfError, NameRuleError) as exc:
        raise JoinError(f"cannot write {config_path}: {exc}") from None
    say(f"wrote {config_path} (mode 0600)")
    os.environ.pop(DATABASE_URL_ENV, None)  # from now on, node.conf says where the DB is
    config = load_config(config_path)
    engine = make_engine(target)
    try:
        cert, _ = ensure_certificate(config, engine, host_address=address)
    finally:
        engine.dispose()
    fingerprint = _cert_sha256(cert)
    say(f"L7R certificate {cert} (SHA-256 {fingerprint})")
    return JoinResult(config, config_path, target, host, fingerprint)
