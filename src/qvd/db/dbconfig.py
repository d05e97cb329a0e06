"""The ``configs`` table as configuration layers: global rows (tenant -1) and
per-tenant rows, laid over a node's file configuration."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from sqlalchemy import Connection, Engine, text

from qvd.config import GLOBAL_TENANT, Config, ConfigError

__all__ = ["LiveConfig", "config_with_db", "read_config_rows"]

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


class LiveConfig:
    """A file configuration with the database's rows over it, read again when older
    than ``max_age`` seconds or after :meth:`expire` (a process that changes the rows
    expires its own copy; other processes see the change within ``max_age``)."""

    def __init__(self, config: Config, engine: Engine, max_age: float = 2.0) -> None:
        self.file_config = config
        self._engine = engine
        self._max_age = max_age
        self._config = config
        self._loaded: float | None = None
        self._lock = threading.Lock()

    def get(self) -> Config:
        with self._lock:
            now = time.monotonic()
            if self._loaded is None or now - self._loaded > self._max_age:
                self._config = config_with_db(self.file_config, self._engine)
                self._loaded = now
            return self._config

    def expire(self) -> None:
        with self._lock:
            self._loaded = None
