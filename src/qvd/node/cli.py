"""The ``qvd`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from sqlalchemy import Engine

from qvd.api import ServeError, api_endpoint, login_instructions
from qvd.config import Config, ConfigError, load_config
from qvd.db import (
    DatabaseError,
    DatabaseTarget,
    database_target,
    initialize_database,
    make_engine,
    reset_admin_password,
    schema_status,
)
from qvd.db import downgrade as db_downgrade
from qvd.db import upgrade as db_upgrade
from qvd.di.cli import app as di_app
from qvd.hkd.backends import BACKENDS, load_backend
from qvd.hkd.daemon import HkdStartError
from qvd.hkd.gc import run_once
from qvd.hkd.liveconfig import read_pending_restart
from qvd.hkd.settings import HkdSettings
from qvd.hkd.store import find_host
from qvd.node.configdoc import config_reference
from qvd.node.doctor import Level, diagnose, gather
from qvd.node.nodecli import node_app
from qvd.node.service import LOG_MODES, serve_api, serve_hkd, setup_logging
from qvd.node.up import run_up

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="QVD node tools.")
db_app = typer.Typer(no_args_is_help=True, help="The QVD database: schema and administrators.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration tokens and files.")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(di_app, name="di", help="Disk images: build them from recipes.")
app.add_typer(node_app, name="node", help="Join this machine to a fleet; its systemd units.")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Node configuration file (default $QVD_CONFIG or /etc/qvd/node.conf).",
    ),
]


LogOption = Annotated[
    str,
    typer.Option(
        "--log",
        help="Where logs go: `journal` (structured entries), `stderr` (plain lines) or "
        "`auto` (the journal when systemd connected stderr to it).",
    ),
]
JournalSocketOption = Annotated[
    Path | None,
    typer.Option("--journal-socket", help="journald's socket (default its usual path).",
                 hidden=True),
]  # fmt: skip


def _logging(cfg: Config, identifier: str, log: str, journal_socket: Path | None) -> None:
    if log not in LOG_MODES:
        raise _Failure(f"--log {log!r}: use one of {', '.join(LOG_MODES)}")
    setup_logging(cfg, identifier, log, journal_socket)


class _Failure(Exception):
    """An error already worded for the user; exit code 1."""


def _config(path: Path | None) -> Config:
    return load_config(path)


def _engine(config: Config) -> tuple[Engine, DatabaseTarget]:
    target = database_target(config)
    return make_engine(target), target


def _err(message: str) -> None:
    typer.echo(f"qvd: error: {message}", err=True)


# ---- qvd db ------------------------------------------------------------------------------
@db_app.command("init")
def db_init(config: ConfigOption = None) -> None:
    """Create the schema and seed data, and the superadmin (its password is shown once)."""
    engine, target = _engine(_config(config))
    result = initialize_database(engine)
    typer.echo(f"{target.describe()}: schema {result.schema}")
    if result.superadmin_password is None:
        typer.echo("already initialised; the superadmin exists (its password is unchanged)")
    else:
        typer.echo("superadmin (tenant '*') password, shown this once:")
        typer.echo(f"  {result.superadmin_password}")


@db_app.command("upgrade")
def db_upgrade_cmd(config: ConfigOption = None) -> None:
    """Apply pending migrations."""
    engine, target = _engine(_config(config))
    before = schema_status(engine)
    db_upgrade(engine)
    after = schema_status(engine)
    if before.current == after.current:
        typer.echo(f"{target.describe()}: already at {after.current}")
    else:
        typer.echo(f"{target.describe()}: {before.current or 'empty'} -> {after.current}")


@db_app.command("downgrade")
def db_downgrade_cmd(
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for empty.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: data may be lost.")] = False,
    config: ConfigOption = None,
) -> None:
    """Undo migrations down to REVISION (data in dropped tables is lost)."""
    if not yes:
        raise _Failure("downgrading can drop tables and their data: add --yes to confirm")
    engine, target = _engine(_config(config))
    db_downgrade(engine, revision)
    typer.echo(f"{target.describe()}: now at {schema_status(engine).current or 'empty'}")


@db_app.command("status")
def db_status(config: ConfigOption = None) -> None:
    """Show the schema version and pending migrations (exit 3 if any are pending)."""
    engine, target = _engine(_config(config))
    status = schema_status(engine)
    typer.echo(f"database:  {target.describe()}")
    typer.echo(f"schema:    {status.current or '(none: run `qvd db init`)'}")
    typer.echo(f"software:  {status.head}")
    if not status.known:
        typer.echo("the database is at a revision this software does not know (newer?)")
        raise typer.Exit(4)
    if status.pending:
        typer.echo("pending migrations:")
        for line in status.pending:
            typer.echo(f"  {line}")
        raise typer.Exit(3)
    typer.echo("up to date")


@db_app.command("admin-password")
def db_admin_password(
    name: Annotated[str, typer.Argument(help="Administrator name, e.g. superadmin or batman.")],
    tenant_id: Annotated[int, typer.Option(help="Tenant of the administrator.")] = 0,
    config: ConfigOption = None,
) -> None:
    """Give an administrator a new generated password (shown once)."""
    engine, _ = _engine(_config(config))
    try:
        password = reset_admin_password(engine, name, tenant_id)
    except LookupError as exc:
        raise _Failure(str(exc)) from None
    typer.echo(f"new password for {name!r}, shown this once:")
    typer.echo(f"  {password}")


# ---- qvd config --------------------------------------------------------------------------
@config_app.command("doc")
def config_doc() -> None:
    """Print the reference of every token (Markdown)."""
    typer.echo(config_reference(), nl=False)


@config_app.command("check")
def config_check(
    path: Annotated[Path, typer.Argument(help="Configuration file to check.")],
    pending: Annotated[
        bool,
        typer.Option(
            "--pending",
            help="Also list the database rows this node's daemons apply only at a restart.",
        ),
    ] = False,
) -> None:
    """Check a configuration file: syntax, known tokens, types and references."""
    cfg = load_config(path)
    typer.echo(f"{path}: OK")
    if pending:
        engine, target = _engine(cfg)
        try:
            with engine.connect() as conn:
                names = read_pending_restart(conn, cfg.get("nodename"))
        finally:
            engine.dispose()
        if names is None:
            typer.echo(f"{target.describe()}: no pending list recorded (is the HKD running?)")
        elif names:
            typer.echo(
                "pending restart (rows changed since the daemons started): " + ", ".join(names)
            )
        else:
            typer.echo("pending restart: none")


@config_app.command("get")
def config_get(
    token: Annotated[str, typer.Argument(help="Token name.")],
    config: ConfigOption = None,
) -> None:
    """Print a token's value (file and defaults) and where it comes from."""
    cfg = _config(config)
    setting = cfg.setting(token)
    if setting is None:
        raise _Failure(f"{token} has no value")
    where = setting.source + (f":{setting.line}" if setting.line else "")
    typer.echo(f"{token} = {cfg.get(token)}    ({where})")


# ---- qvd doctor ------------------------------------------------------------------------------
@app.command("doctor")
def doctor(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Check this node (kernel, cgroups, bridge, database, certificates, storage, time) and
    say what to fix; exit code 1 when a check fails."""
    findings = diagnose(gather(_config(config)))
    if as_json:
        rows = [
            {"check": f.check, "level": f.level.value, "message": f.message, "fix": f.fix}
            for f in findings
        ]
        typer.echo(json.dumps({"findings": rows}, indent=2))
    else:
        for f in findings:
            typer.echo(
                f"{f.level.value:<4} {f.check}: {f.message}"
                + (f" -> {f.fix}" if f.fix and f.level is not Level.OK else "")
            )
    if any(f.level is Level.FAIL for f in findings):
        raise typer.Exit(1)


# ---- qvd hkd ------------------------------------------------------------------------------
@app.command("hkd")
def hkd(
    config: ConfigOption = None, log: LogOption = "auto", journal_socket: JournalSocketOption = None
) -> None:
    """Run this node's House Keeping Daemon in the foreground (root); under systemd it
    says when it is ready (Type=notify) and logs to the journal."""
    cfg = _config(config)
    _logging(cfg, "qvd-hkd", log, journal_socket)
    try:
        serve_hkd(cfg)
    except HkdStartError as exc:
        raise _Failure(str(exc)) from None


# ---- qvd gc -------------------------------------------------------------------------------
@app.command("gc")
def gc(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Only say what would be removed, and why.")
    ] = False,
) -> None:
    """Remove this node's storage that nothing will use again (leftover uploads and
    unpacks, bases of deleted DIs, layers and, after internal.hkd.gc.home_retention,
    homes of deleted VMs); never anything a running or starting VM uses."""
    cfg = _config(config)
    engine, _ = _engine(cfg)
    try:
        settings = HkdSettings.from_config(cfg)
        with engine.begin() as conn:
            host = find_host(conn, settings.nodename)
        backend = load_backend(settings.hypervisor, config=cfg)
        removals = run_once(
            cfg, engine, backend, host.id if host is not None else None, dry_run=dry_run
        )
    except DatabaseError as exc:
        raise _Failure(str(exc)) from None
    finally:
        engine.dispose()
    verb = "would remove" if dry_run else "removed"
    for removal in removals:
        typer.echo(f"{verb} {removal.path}: {removal.reason}")
    typer.echo(f"{len(removals)} {'entries' if len(removals) != 1 else 'entry'} {verb}")


# ---- qvd api ------------------------------------------------------------------------------
@app.command("api")
def api(
    config: ConfigOption = None, log: LogOption = "auto", journal_socket: JournalSocketOption = None
) -> None:
    """Serve the admin API (TLS) in the foreground (Type=notify under systemd)."""
    cfg = _config(config)
    _logging(cfg, "qvd-api", log, journal_socket)
    endpoint = api_endpoint(cfg)
    for line in login_instructions(endpoint):
        typer.echo(line)
    try:
        serve_api(cfg)
    except ServeError as exc:
        raise _Failure(str(exc)) from None


# ---- qvd up ------------------------------------------------------------------------------
@app.command("up")
def up(
    config: ConfigOption = None,
    hypervisor: Annotated[
        str | None,
        typer.Option(
            "--hypervisor",
            help="Run the desktops as `lxc` containers or `kvm` virtual machines "
            "(vm.hypervisor; default: the configuration's, else lxc).",
        ),
    ] = None,
) -> None:
    """Run an all-in-one node in the foreground: database, HKD with L7R, API, demo desktop."""
    cfg = _config(config)
    if hypervisor is not None:
        known = sorted(name for name in BACKENDS if name != "fake")
        if hypervisor not in known:
            raise _Failure(f"--hypervisor {hypervisor!r}: use one of {', '.join(known)}")
        cfg = cfg.with_overrides({"vm.hypervisor": hypervisor}, source="qvd up --hypervisor")
    run_up(cfg, sys.stdout)


def main() -> None:
    """Run the command; errors the user can act on are one line on stderr, exit 1."""
    try:
        # standalone_mode=False: click returns an exit code instead of exiting, and
        # lets our own errors through so they are worded here, without a traceback
        code = app(standalone_mode=False)
    except (ConfigError, DatabaseError, _Failure) as exc:
        _err(str(exc))
        sys.exit(1)
    except click.exceptions.Abort:
        _err("aborted")
        sys.exit(130)
    except click.ClickException as exc:  # usage errors
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
