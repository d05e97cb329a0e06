"""The ``configs`` table as configuration layers: global rows (tenant -1) and
per-tenant rows, laid over a node's file configuration."""

from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import Connection, Engine, text

from qvd.config import GLOBAL_TENANT, Config, ConfigError

__all__ = ["config_with_db", "read_config_rows"]

log = logging.getLogger("qvd.db.config")


def read_config_rows(conn: Connection) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """(global rows, rows per tenant) of the ``configs`` table."""
    global_rows: dict[str, str] = {}
    tenant_rows: dict[int, dict[str, str]] = defaultdict(dict)
    for tenant_id, key, value in conn.execute(text("SELECT tenant_id, key, value FROM configs")):
        if tenant_id == GLOBAL_TENANT:
            global_rows[key] = value
        else:
            tenant_rows[tenant_id][key] = value
    return global_rows, dict(tenant_rows)


def config_with_db(config: Config, engine: Engine, *, strict: bool = False) -> Config:
    """``config`` with the database's rows laid over it (re-read on each call: daemons
    call it again when ``qvd_config_changed`` arrives).

    A row that does not fit its token (a wrong type, an unknown token, a reference to
    nothing) raises with ``strict``; otherwise it is left out and logged, so that one
    bad row cannot stop every login on a node."""
    with engine.connect() as conn:
        global_rows, tenant_rows = read_config_rows(conn)
    try:
        return config.with_db(global_rows, tenant_rows)
    except ConfigError:
        if strict:
            raise
    good_global = {k: v for k, v in global_rows.items() if _fits(config, {k: v}, {})}
    good_tenants = {
        t: {k: v for k, v in rows.items() if _fits(config, good_global, {t: {k: v}})}
        for t, rows in tenant_rows.items()
    }
    return config.with_db(good_global, good_tenants)


def _fits(
    config: Config, global_rows: dict[str, str], tenant_rows: dict[int, dict[str, str]]
) -> bool:
    try:
        config.with_db(global_rows, tenant_rows)
    except ConfigError as exc:
        log.warning("ignoring a configuration row: %s", exc)
        return False
    return True
