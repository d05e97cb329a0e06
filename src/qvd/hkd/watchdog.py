"""The fencing watchdog: a small process, started by the HKD in its own session so
that it outlives it, which kills this node's VMs once the lease (``qvd.hkd.lease``)
expires: when the HKD has not proved its heartbeat for the fence timeout, even if the
HKD is dead (kill -9) or hung. An HKD restarted before the deadline renews the lease
and adopts the running VMs; it reuses the watchdog that is there.

It never touches the database. It exits when the lease is released (a clean stop), or
once the lease has expired, its HKD is gone and nothing runs any more.

``python -m qvd.hkd.watchdog SPEC`` where SPEC is a JSON file (0600, written by
:meth:`WatchdogHandle.ensure`): the lease path, its own lock, and the node's non-secret
settings, from which it builds the same backend as the HKD.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from qvd.config import Config
from qvd.config.tokens import is_secret
from qvd.hkd.backends import Backend, load_backend
from qvd.hkd.fencing import kill_all
from qvd.hkd.lease import LeaseFile, boot_clock
from qvd.hkd.pidlock import LockHeld, PidLock, pid_alive
from qvd.hkd.settings import FENCE_TIMER_PERIOD, HkdSettings

__all__ = ["WatchdogHandle", "main", "watch"]

log = logging.getLogger("qvd.hkd.watchdog")

_IDLE_EXPIRED = 0.5  # seconds between looks while the lease is expired and nothing ran


def watch(lease_file: LeaseFile, backend: Backend, *, period: float = FENCE_TIMER_PERIOD) -> None:
    """Guard the lease until there is nothing left to guard."""
    while True:
        lease = lease_file.read()
        if lease is not None and lease.released:
            log.info("lease released (the HKD stopped cleanly): watchdog exits")
            return
        now = boot_clock()
        if lease is not None and not lease.expired(now):
            time.sleep(min(period, max(0.0, lease.deadline - now)))
            continue
        killed = kill_all(backend)
        if killed:
            log.error("lease expired: killed VMs %s", killed)
        holder_gone = lease is None or not pid_alive(lease.holder)
        if holder_gone and not killed and not backend.list_running():
            log.info("lease expired, HKD gone, nothing runs: watchdog exits")
            return
        # while the lease stays expired, look again soon after a kill, else calmly
        time.sleep(period if killed else _IDLE_EXPIRED)


def _node_settings(config: Config) -> dict[str, str]:
    """The node's settings the backend may need: everything but the database's and
    secrets (the watchdog never connects anywhere)."""
    values: dict[str, str] = {}
    for name in config.names():
        if name.startswith("database.") or is_secret(name):
            continue
        setting = config.setting(name)
        if setting is None or setting.source == "built-in default":
            continue
        raw = config.raw(name)
        if raw is not None:
            values[name] = raw
    return values


class WatchdogHandle:
    """What the HKD knows of its watchdog: whether one runs (it holds the watchdog
    lock: ours, or one a previous HKD left), and how to start one. The watchdog is
    started through ``setsid --fork``: in its own session, not the HKD's child, so
    neither a signal to the HKD's group nor the HKD's death reaches it."""

    _RESPAWN_GRACE = 10.0  # seconds a new watchdog may take to take its lock

    def __init__(self, settings: HkdSettings, config: Config) -> None:
        self._settings = settings
        self._config = config
        self._spawned_at: float | None = None

    def running(self) -> bool:
        probe = PidLock(self._settings.watchdog_lock_path)
        try:
            probe.acquire()
        except LockHeld:
            return True
        probe.release()
        return False

    def wait_gone(self, *, timeout: float) -> bool:
        """After a released lease: wait until the watchdog has seen it and exited (it
        looks at least every fence-timer period), so a clean stop leaves no process."""
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() >= deadline:
                log.warning("the fencing watchdog is still running after the stop")
                return False
            time.sleep(0.05)
        return True

    def end(self, *, timeout: float = 10.0) -> None:
        """End the node's watchdog by the PID its lock names (SIGTERM), for an owner
        that tears the whole node down after ``Hkd.halt`` (benchmarks, tests): nothing
        of the node is left to guard then."""
        probe = PidLock(self._settings.watchdog_lock_path)
        try:
            probe.acquire()
        except LockHeld as held:
            if held.holder.isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(held.holder), signal.SIGTERM)
            self.wait_gone(timeout=timeout)
        else:
            probe.release()  # none runs

    def ensure(self) -> bool:
        """Start a watchdog unless one runs (or one was started moments ago and is
        still taking its lock); whether one was started."""
        if self.running():
            return False
        now = time.monotonic()
        if self._spawned_at is not None and now - self._spawned_at < self._RESPAWN_GRACE:
            return False
        spec = self._settings.lease_path.with_name("hkd-watchdog.json")
        data = {
            "lease": str(self._settings.lease_path),
            "lock": str(self._settings.watchdog_lock_path),
            "settings": _node_settings(self._config),
        }
        spec.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(spec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        log_path = self._settings.lease_path.with_name("hkd-watchdog.log")
        with open(log_path, "ab") as out:
            subprocess.run(
                ["setsid", "--fork", sys.executable, "-m", "qvd.hkd.watchdog", str(spec)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, close_fds=True,
                check=True, timeout=30,
            )  # fmt: skip
        self._spawned_at = now
        log.info("fencing watchdog started (log: %s)", log_path)
        return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(args[0]).read_text())
    lock = PidLock(Path(spec["lock"]))
    try:
        lock.acquire()
    except LockHeld as held:
        log.info("another watchdog (pid %s) guards this node", held.holder)
        return 0
    try:
        config = Config().with_overrides(spec["settings"], source="hkd")
        backend = load_backend(config.get("vm.hypervisor"), config=config)
        log.info("guarding lease %s", spec["lease"])
        watch(LeaseFile(Path(spec["lease"])), backend)
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
