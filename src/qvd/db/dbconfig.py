"""The ``configs`` table as configuration layers: global rows (tenant -1) and
per-tenant rows, laid over a node's file configuration."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Connection, Engine, text

from qvd.config import GLOBAL_TENANT, Config

__all__ = ["config_with_db", "read_config_rows"]


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


def config_with_db(config: Config, engine: Engine) -> Config:
    """``config`` with the database's rows laid over it (re-read on each call: daemons
    call it again when ``qvd_config_changed`` arrives)."""
    with engine.connect() as conn:
        global_rows, tenant_rows = read_config_rows(conn)
    return config.with_db(global_rows, tenant_rows)
