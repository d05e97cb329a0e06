"""The database's ``configs`` rows on a running node (issue #17).

- :class:`StartSettings`: what a VM takes at its start from the live configuration,
  read with the VM's tenant (``vm.cpus``, ``vm.cpu.weight``, ``vm.overlay.persistent``);
  a value out of range is logged and the node's own value used instead.
- :func:`pending_restart`: the restart-only tokens (``qvd.config.applies``) whose
  value differs from what the node's daemons started with.
- :class:`ConfigWatch`: a thread of the HKD. On ``qvd_config_changed`` (and every
  ``internal.hkd.config.poll.delay`` seconds, the fallback for a lost notification)
  it expires every live configuration of the process (HKD and L7R read the new rows at
  once), logs each newly pending restart-only token once, and writes the pending list
  into the host's ``backend_facts`` (``pending_restart``), where ``qvd config check
  --pending`` and an admin's query find it. A bad row is logged by the configuration
  layer and skipped; nothing here stops the node.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection, Engine, text

from qvd.config import Config, ConfigError
from qvd.config.applies import Applies, applies_of
from qvd.db import DatabaseTarget, Listener, LiveConfig, config_with_db, make_engine
from qvd.db.channels import CONFIG_CHANGED
from qvd.hkd.settings import CPU_WEIGHT_MAX, CPU_WEIGHT_MIN, HkdSettings

__all__ = [
    "PENDING_FACT",
    "ConfigWatch",
    "StartSettings",
    "pending_restart",
    "read_pending_restart",
    "startup_config",
    "write_pending_restart",
]

log = logging.getLogger("qvd.hkd.config")

_T = TypeVar("_T")

PENDING_FACT = "pending_restart"  # key in host_runtimes.backend_facts


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSettings:
    """A VM's settings taken at its start."""

    vcpus: int
    cpu_weight: int
    overlay_persistent: bool

    @classmethod
    def of_node(cls, settings: HkdSettings) -> StartSettings:
        """The node's own values (its file and the rows it started with)."""
        return cls(
            vcpus=settings.vcpus,
            cpu_weight=settings.cpu_weight,
            overlay_persistent=settings.overlay_persistent,
        )

    @classmethod
    def resolve(
        cls, config: Config, tenant_id: int | None, fallback: StartSettings
    ) -> StartSettings:
        """The values for a VM of ``tenant_id`` in ``config`` (global rows, then the
        tenant's rows); each value that cannot be read or is out of range is logged and
        replaced by ``fallback``'s."""
        vcpus = _read(config, "vm.cpus", tenant_id, config.get_int, fallback.vcpus)
        if vcpus < 1:
            log.warning(
                "vm.cpus is %s: a desktop has at least 1 CPU; using %s", vcpus, fallback.vcpus
            )
            vcpus = fallback.vcpus
        weight = _read(config, "vm.cpu.weight", tenant_id, config.get_int, fallback.cpu_weight)
        if not CPU_WEIGHT_MIN <= weight <= CPU_WEIGHT_MAX:
            log.warning(
                "vm.cpu.weight is %s: outside %s..%s; using %s",
                weight,
                CPU_WEIGHT_MIN,
                CPU_WEIGHT_MAX,
                fallback.cpu_weight,
            )
            weight = fallback.cpu_weight
        persistent = _read(
            config, "vm.overlay.persistent", tenant_id, config.get_bool, fallback.overlay_persistent
        )
        return cls(vcpus=vcpus, cpu_weight=weight, overlay_persistent=persistent)


def _read(
    config: Config,
    name: str,
    tenant_id: int | None,
    get: Callable[[str, int | None], _T],
    fallback: _T,
) -> _T:
    try:
        return get(name, tenant_id)
    except (ConfigError, ValueError) as exc:
        log.warning("%s cannot be read (%s); using %s", name, exc, fallback)
        return fallback


def pending_restart(started: Config, current: Config) -> list[str]:
    """Restart-only tokens whose global value in ``current`` differs from ``started``
    (names only: a secret's value is never compared out loud), sorted."""
    names = set(started.names()) | set(current.names())
    pending = []
    for name in names:
        if applies_of(name) is not Applies.RESTART:
            continue
        before, after = started.setting(name), current.setting(name)
        if (before.value if before else None) != (after.value if after else None):
            pending.append(name)
    return sorted(pending)


def write_pending_restart(conn: Connection, host_id: int, pending: list[str]) -> None:
    """Record the pending list among the host's facts (JSON text; other keys kept)."""
    conn.execute(
        text(
            "UPDATE host_runtimes SET backend_facts = (coalesce(backend_facts, '{}')::jsonb"
            " || jsonb_build_object(CAST(:k AS text), CAST(:v AS text)))::text"
            " WHERE host_id = :h"
        ),
        {"k": PENDING_FACT, "v": ",".join(pending), "h": host_id},
    )


def read_pending_restart(conn: Connection, host_name: str) -> list[str] | None:
    """The pending list a node recorded; None if the node has recorded none."""
    value = conn.execute(
        text(
            "SELECT r.backend_facts::jsonb ->> CAST(:k AS text) FROM host_runtimes r"
            " JOIN hosts h ON h.id = r.host_id WHERE h.name = :n"
        ),
        {"k": PENDING_FACT, "n": host_name},
    ).scalar_one_or_none()
    if value is None:
        return None
    return [name for name in str(value).split(",") if name]


class ConfigWatch:
    """Follows the ``configs`` rows for one node (run :meth:`run` in a thread)."""

    def __init__(
        self,
        live: LiveConfig,
        started: Config,
        *,
        target: DatabaseTarget,
        engine: Engine,
        host_id: int,
        poll_delay: float,
        transient: tuple[type[BaseException], ...],
    ) -> None:
        self.live = live
        self.started = started
        self._target = target
        self._engine = engine
        self._host_id = host_id
        self._poll_delay = max(0.5, poll_delay)
        self._transient = transient
        self._reported: set[str] = set()
        self._written: list[str] | None = None
        self.checks = 0  # how many times the rows were looked at (for tests and logs)

    def check(self) -> list[str]:
        """Read the rows now: every live configuration of the process, then the
        pending restart-only tokens (logged once each, recorded when they change)."""
        LiveConfig.expire_all()
        current = self.live.get()
        pending = pending_restart(self.started, current)
        for name in pending:
            if name not in self._reported:
                log.warning(
                    "configuration row %s changed: it is read only when this node's daemons "
                    "start; restart them to apply it (qvd config check --pending lists these)",
                    name,
                )
        self._reported = set(pending)  # a token set back and changed again is news again
        if pending != self._written:
            with self._engine.begin() as conn:
                write_pending_restart(conn, self._host_id, pending)
            self._written = pending
        self.checks += 1
        return pending

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: LISTEN, check at once and on each notification, and every
        poll delay; a lost connection is reopened (and the rows checked again)."""
        while not stop.is_set():
            try:
                with Listener(self._target, [CONFIG_CHANGED]) as listener:
                    self.check()
                    next_poll = time.monotonic() + self._poll_delay
                    while not stop.is_set():
                        notes = listener.wait(min(0.5, self._poll_delay))
                        if notes or time.monotonic() >= next_poll:
                            self.check()
                            next_poll = time.monotonic() + self._poll_delay
            except self._transient as exc:
                log.warning("configuration watch lost the database (%s); reconnecting", exc)
                stop.wait(1.0)
            except Exception:  # never let the watch die: the node would go deaf to rows
                log.exception("configuration watch failed; retrying")
                stop.wait(self._poll_delay)


def startup_config(
    config: Config, target: DatabaseTarget, transient: tuple[type[BaseException], ...]
) -> Config:
    """``config`` with the database's rows over it, for a daemon's start (restart-only
    tokens are read here). Rows that would not let the HKD start (e.g. a fence order
    broken by a row) are refused with a log line: the node starts with its file; an
    unreachable database leaves the file's values (the start then says why)."""
    engine = make_engine(target, pool_size=1, max_overflow=0)
    try:
        merged = config_with_db(config, engine)
    except transient as exc:
        log.warning("configuration rows not read at start (%s)", exc)
        return config
    finally:
        engine.dispose()
    try:
        HkdSettings.from_config(merged)
    except (ConfigError, ValueError) as exc:
        log.error(
            "the database's configuration rows would not let the HKD start (%s): starting "
            "with this node's file configuration instead; fix the rows",
            exc,
        )
        return config
    return merged
