"""Schema migrations (Alembic) and the schema check every daemon makes at start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from qvd.db.errors import SchemaMismatch

__all__ = ["SchemaStatus", "downgrade", "require_current_schema", "schema_status", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaStatus:
    """Where the database's schema stands against this software's migrations."""

    current: str | None
    head: str
    pending: tuple[str, ...]
    known: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_status(engine: Engine) -> SchemaStatus:
    script = _script()
    head = script.get_current_head()
    assert head is not None
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    known = current is None or _get_revision_safely(script, current)
    pending: list[str] = []
    if known:
        for rev in script.iterate_revisions(head, current):
            pending.append(f"{rev.revision} {(rev.doc or '').splitlines()[0]}")
        pending.reverse()
    return SchemaStatus(current=current, head=head, pending=tuple(pending), known=known)


def _get_revision_safely(script: ScriptDirectory, rev: str) -> bool:
    try:
        return script.get_revision(rev) is not None
    except Exception:  # alembic raises its own error types for unknown revisions
        return False


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def require_current_schema(engine: Engine, component: str) -> None:
    """Refuse to run against a schema this software does not match.

    Daemons (HKD, API, L7R) call this at start; the message says what to do.
    """
    status = schema_status(engine)
    if status.up_to_date:
        return
    if status.current is None:
        raise SchemaMismatch(
            f"{component}: the database has no QVD schema; run `qvd db init` first"
        )
    if not status.known:
        raise SchemaMismatch(
            f"{component}: the database schema is at revision {status.current}, which this "
            f"software does not know (it is newer?); this software needs {status.head}: "
            "upgrade QVD on this node"
        )
    raise SchemaMismatch(
        f"{component}: the database schema is at revision {status.current} but this "
        f"software needs {status.head} ({len(status.pending)} migration(s) pending); "
        "run `qvd db upgrade`"
    )
