"""``qvd node …``: make a join token, join this machine to the fleet, its systemd units."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from qvd.config import Config, config_from_text, load_config
from qvd.config.loader import CONFIG_ENV, DEFAULT_CONFIG_PATH
from qvd.db import DatabaseTarget, database_target, embedded_cluster
from qvd.node.join import (
    JOIN_TOKEN_ENV,
    JoinError,
    database_from_url,
    join_node,
    read_secret_argument,
)
from qvd.node.joindb import JoinRefused, make_token
from qvd.node.jointoken import JoinTokenError, decode_token, encode_token, parse_ttl
from qvd.node.service import LOG_MODES, serve_hkd, setup_logging
from qvd.node.units import (
    UNIT_NAMES,
    UnitError,
    install_units,
    render_units,
    systemd_is_running,
)

__all__ = ["node_app"]

node_app = typer.Typer(no_args_is_help=True)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _config_path(path: Path | None) -> Path:
    if path is not None:
        return path
    return Path(os.environ.get(CONFIG_ENV, str(DEFAULT_CONFIG_PATH)))


def _admin_target(config: Config) -> DatabaseTarget:
    """Who makes the token's role: the embedded cluster's superuser (over its socket,
    as root on its machine), else the configured connection (it needs CREATEROLE)."""
    target = database_target(config)
    if target.embedded:
        return embedded_cluster(config).target(as_superuser=True)
    return target


@node_app.command("token")
def token_cmd(
    host: Annotated[
        str | None, typer.Option("--host", help="Only a node of this name may use it.")
    ] = None,
    ttl: Annotated[str, typer.Option("--ttl", help="Valid for (s, m, h, d; at most 7d).")] = "1h",
    db_host: Annotated[
        str | None,
        typer.Option(
            "--db-host",
            help="How the new node reaches the database (host list; "
            "default: as this machine does).",
        ),
    ] = None,
    db_port: Annotated[str | None, typer.Option("--db-port", help="Its port (list).")] = None,
    app_role: Annotated[
        str | None,
        typer.Option("--app-role", help="The role owning QVD's tables (default database.user)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Node configuration.")
    ] = None,
) -> None:
    """Make a one-time join token for a new node and print it once (it is a secret:
    it lets one node into the database until it is used or expires)."""
    cfg = load_config(config)
    admin = _admin_target(cfg)
    try:
        lifetime = parse_ttl(ttl)
    except JoinTokenError as exc:
        raise JoinError(str(exc)) from None
    configured = database_target(cfg)
    reach_host = db_host or configured.params.get("host", "")
    reach_port = db_port or configured.params.get("port", "5432")
    if not reach_host:
        raise JoinError("say how a new node reaches the database: --db-host")
    try:
        token = make_token(
            admin, app_role=app_role or cfg.get("database.user"), ttl=lifetime,
            host_name=host, db_host=reach_host, db_port=reach_port,
        )  # fmt: skip
    except (JoinRefused, ValueError) as exc:
        raise JoinError(str(exc)) from None
    until = token.expiration.isoformat(timespec="seconds")
    who = f"node {host!r}" if host else "one node"
    _say(f"join token for {who}, valid until {until}; on the new machine, as root:")
    _say("  qvd node join --token - < token-file   (or QVD_JOIN_TOKEN=… qvd node join)")
    _say("this is the only time it is shown; it is a secret (it opens the database once)")
    print(encode_token(token), flush=True)


@node_app.command("join")
def join_cmd(
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help=f"`-` (read it from stdin) or `@FILE`; default ${JOIN_TOKEN_ENV}."
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="Instead of a token: a libpq URL, `-` (stdin) for "
            "one with a password; else the password comes from $PGPASSWORD.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="This node's name (default: the host name).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Its address for peers and clients (default: the "
            "one it reaches the database from).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="node.conf to write (default $QVD_CONFIG or "
            "/etc/qvd/node.conf); its other settings are kept.",
        ),
    ] = None,
    start: Annotated[bool, typer.Option("--start/--no-start", help="Start the node.")] = True,
    log: Annotated[str, typer.Option("--log", help="auto, journal or stderr.")] = "auto",
) -> None:
    """Join this machine to the fleet: install what it needs, register it, write its
    node.conf and start its HKD + L7R (under systemd when PID 1 is systemd)."""
    if log not in LOG_MODES:
        raise JoinError(f"--log {log!r}: use one of {', '.join(LOG_MODES)}")
    path = _config_path(config)
    base = load_config(path) if path.exists() else config_from_text("", source="qvd node join")
    join_token = None
    target = None
    if database is not None and token is not None:
        raise JoinError("give --token or --database, not both")
    if database is not None:
        if database == "-":
            url = sys.stdin.readline().strip()
        else:
            url = database
            if "password" in database_from_url(url, environ={}).params:
                raise JoinError(
                    "--database: do not put a password on the command line (any user can "
                    "read it in the process list): use `--database -` and give the URL on "
                    "stdin, or set $PGPASSWORD"
                )
        target = database_from_url(url)
    else:
        text = read_secret_argument(
            token, "join token", env=JOIN_TOKEN_ENV, stdin=lambda: sys.stdin.readline()
        )
        try:
            join_token = decode_token(text)
        except JoinTokenError as exc:
            raise JoinError(str(exc)) from None
    node_name = name or (join_token.host_name if join_token else None) or socket.gethostname()
    result = join_node(
        base, path, token=join_token, database=target, name=node_name, address=address, say=_say
    )
    if not start:
        _say("not started (--no-start): `qvd hkd --config …` or the qvd-hkd unit starts it")
        return
    if systemd_is_running():
        try:
            install_units(result.config, path, ("qvd-hkd.service",), _say)
        except (UnitError, OSError) as exc:
            raise JoinError(f"cannot install the qvd-hkd unit: {exc}") from None
        return
    _say("systemd is not PID 1: running the node in the foreground (stop with SIGTERM)")
    setup_logging(result.config, "qvd-hkd", log)
    serve_hkd(result.config)


@node_app.command("units")
def units_cmd(
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the rendered units here.")
    ] = None,
    install: Annotated[
        bool, typer.Option("--install", help="Install into /etc/systemd/system and start.")
    ] = False,
    unit: Annotated[
        list[str] | None, typer.Option("--unit", help="Only this unit (repeatable).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Node configuration.")
    ] = None,
) -> None:
    """The systemd units of this node (qvd-postgresql, qvd-hkd, qvd-api), rendered with
    its paths; with --install, installed and started."""
    path = _config_path(config)
    cfg = load_config(path) if path.exists() else config_from_text("")
    names = tuple(unit or UNIT_NAMES)
    try:
        if install:
            install_units(cfg, path, names, _say)
            return
        if output is None:
            raise JoinError("say where: --output DIR, or --install")
        rendered = render_units(cfg, path, names)
        output.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (output / name).write_text(text)
            _say(f"wrote {output / name}")
    except UnitError as exc:
        raise JoinError(str(exc)) from None
