"""The ``configs`` table as configuration layers: global rows (tenant -1) and
per-tenant rows, laid over a node's file configuration."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

from qvd.config import GLOBAL_TENANT, Config, ConfigError

__all__ = ["ConfigRows", "LiveConfig", "config_from_rows", "config_with_db", "read_config_rows"]

# (global rows, rows per tenant) as read from ``configs``
ConfigRows = tuple[dict[str, str], dict[int, dict[str, str]]]

log = logging.getLogger("qvd.db.config")


def read_config_rows(conn: Connection) -> ConfigRows:
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
        rows = read_config_rows(conn)
    return config_from_rows(config, rows, strict=strict)


def config_from_rows(config: Config, rows: ConfigRows, *, strict: bool = False) -> Config:
    """``config`` with ``rows`` laid over it (see :func:`config_with_db`)."""
    global_rows, tenant_rows = rows
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
    expires its own copy; a node's HKD expires every copy of its process on
    ``qvd_config_changed``, :meth:`expire_all`; other processes see the change within
    ``max_age``).

    The rows are compared with the last ones read: only a change builds a new
    configuration (so a bad row is logged once per change, not at every read) and
    calls the subscribers (:meth:`subscribe`) with it."""

    _instances: weakref.WeakSet[LiveConfig] = weakref.WeakSet()

    def __init__(self, config: Config, engine: Engine, max_age: float = 2.0) -> None:
        self.file_config = config
        self._engine = engine
        self._max_age = max_age
        self._config = config
        self._rows: ConfigRows | None = None
        self._loaded: float | None = None
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[Config], None]] = []
        LiveConfig._instances.add(self)

    def last_known(self) -> Config:
        """The configuration as last built, without reading the rows (for a caller
        that cannot wait while the database fails over)."""
        with self._lock:
            return self._config

    def get(self) -> Config:
        changed: Config | None = None
        with self._lock:
            now = time.monotonic()
            if self._loaded is None or now - self._loaded > self._max_age:
                with self._engine.connect() as conn:
                    rows = read_config_rows(conn)
                if rows != self._rows:
                    self._config = config_from_rows(self.file_config, rows)
                    self._rows = rows
                    changed = self._config
                self._loaded = now
            config = self._config
        if changed is not None:
            for callback in list(self._subscribers):
                try:
                    callback(changed)
                except Exception:  # one subscriber's fault must not stop a login
                    log.exception("a configuration subscriber failed")
        return config

    def subscribe(self, callback: Callable[[Config], None]) -> None:
        """Call ``callback`` with the new configuration after each change of the rows
        (in the thread that read them)."""
        self._subscribers.append(callback)

    def expire(self) -> None:
        with self._lock:
            self._loaded = None

    @classmethod
    def expire_all(cls) -> None:
        """Expire every live configuration of this process (``qvd_config_changed``)."""
        for live in list(cls._instances):
            live.expire()
