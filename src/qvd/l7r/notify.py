"""One LISTEN connection per L7R that wakes waiting connects and aborts sessions.

``vm_changed`` bumps a per-VM counter that connect flows wait on (``wait_change``),
so a flow wakes as soon as the HKD moves its VM or another L7R lets a session go;
waits still time out after ``poll`` seconds, the fallback for a lost notification.
``qvd_cmd_for_user_on_host<this host>`` with ``abort`` calls ``on_abort(vm_id)``.

After every LISTEN (the first, and each after the database was lost, e.g. by a
failover) it resyncs: notifications sent meanwhile are gone, so every waiting flow is
woken to re-read its VM, and the aborts already asked of this host are acted on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from qvd.db import DatabaseTarget, Listener
from qvd.db.channels import VM_CHANGED, user_cmd_channel

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self, target: DatabaseTarget, host_id: int, on_abort: Callable[[int], None]
    ) -> None:
        self._target = target
        self._abort_channel = user_cmd_channel(host_id)
        self._on_abort = on_abort
        self._versions: dict[int, int] = {}
        self._epoch = 0  # bumped on each resync: every VM's counter moves
        self._host_id = int(host_id)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="l7r-notifier", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def version(self, vm_id: int) -> int:
        with self._cond:
            return self._counter(vm_id)

    def wait_change(self, vm_id: int, seen: int, timeout: float) -> int:
        """Block until the VM's counter passes ``seen`` or ``timeout``; the new counter."""
        with self._cond:
            self._cond.wait_for(lambda: self._counter(vm_id) != seen, timeout)
            return self._counter(vm_id)

    def _counter(self, vm_id: int) -> int:
        """The VM's counter (under ``_cond``): its notifications plus every resync."""
        return self._epoch + self._versions.get(vm_id, 0)

    def _bump(self, vm_id: int) -> None:
        with self._cond:
            self._versions[vm_id] = self._versions.get(vm_id, 0) + 1
            self._cond.notify_all()

    def _resync(self, listener: Listener) -> None:
        """Wake every waiting flow, and act on the aborts asked of this host."""
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()
        rows = listener.connection.execute(
            "SELECT vm_id FROM vm_runtimes WHERE l7r_host_id = %s AND user_cmd = 'abort'",
            [self._host_id],
        ).fetchall()
        for (vm_id,) in rows:
            with contextlib.suppress(Exception):
                self._on_abort(int(vm_id))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with Listener(self._target, [VM_CHANGED, self._abort_channel]) as listener:
                    self._resync(listener)
                    self._ready.set()
                    while not self._stop.is_set():
                        for note in listener.wait(0.25):
                            vm_id = note.payload.get("vm_id")
                            if not isinstance(vm_id, int):
                                continue
                            if note.channel == self._abort_channel:
                                with contextlib.suppress(Exception):
                                    self._on_abort(vm_id)
                            self._bump(vm_id)
            except Exception:  # the database went away: retry, waits fall back to polling
                log.exception("L7R notification listener failed; reconnecting")
                self._ready.set()
                self._stop.wait(1.0)
