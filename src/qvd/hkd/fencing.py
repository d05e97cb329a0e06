"""Self-fencing: the clock that says until when this node may run its VMs, how a failed
heartbeat is read, and the timer thread that kills the VMs when the clock runs out.

The invariant and its timing are in ``qvd.hkd.settings``. Here:

- :class:`FenceClock` holds the anchor: when the last heartbeat that succeeded was
  *sent* (or when the database was last found down for everyone). Deadline = anchor +
  fence timeout. It is only ever moved forward.
- :func:`probe_database` tells "the database is down for everyone" (connection refused,
  no socket, a server starting or shutting down: it will come back with a new
  ``pg_postmaster_start_time()``, from which peers count everyone's silence anew) from
  "I am cut off" (timeouts, unreachable routes, a server that accepts but never answers).
- :class:`Fencer` looks at the deadline every ``FENCE_TIMER_PERIOD`` on its own thread,
  which never touches the database, so a hung database call cannot delay a fence.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

from qvd.db import DatabaseTarget
from qvd.hkd.backends import Backend, BackendError
from qvd.hkd.lease import boot_clock
from qvd.hkd.settings import FENCE_TIMER_PERIOD

__all__ = ["FenceClock", "Fencer", "Outage", "kill_all", "probe_database"]

log = logging.getLogger("qvd.hkd.fencing")

_REFUSED = {errno.ECONNREFUSED, errno.ENOENT}
# a server that answers with one of these is going away or coming back: a restart
_NOT_READY = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
)


class Outage(Enum):
    DOWN_FOR_EVERYONE = "down for everyone"
    CUT_OFF = "cut off"


class FenceClock:
    """The anchor of this node's right to run VMs; thread-safe."""

    def __init__(
        self, timeout: float, anchor: float, *, clock: Callable[[], float] = boot_clock
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self._anchor = anchor
        self._lock = threading.Lock()

    def renew(self, at: float) -> float:
        """Move the anchor to ``at`` if that is later; return the deadline."""
        with self._lock:
            self._anchor = max(self._anchor, at)
            return self._anchor + self.timeout

    @property
    def deadline(self) -> float:
        with self._lock:
            return self._anchor + self.timeout

    def expired(self) -> bool:
        return self.clock() >= self.deadline


def _endpoints(target: DatabaseTarget) -> list[tuple[str, str]]:
    params = target.params
    hosts = (params.get("hostaddr") or params.get("host") or "/var/run/postgresql").split(",")
    ports = params.get("port", "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return [(h.strip(), p.strip()) for h, p in zip(hosts, ports, strict=False)]


def _refused(host: str, port: str, timeout: float) -> bool:
    """Whether nothing listens at ``host``:``port`` (a socket directory or an address);
    False when it accepts, or cannot be told (timeout, unreachable, no name)."""
    try:
        if host.startswith("/"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(f"{host}/.s.PGSQL.{port}")
        else:
            with socket.create_connection((host, int(port)), timeout=timeout):
                pass
    except OSError as exc:
        return exc.errno in _REFUSED
    except ValueError:
        return False
    return False


def probe_database(
    target: DatabaseTarget, timeout: float, failure: BaseException | None = None
) -> Outage:
    """Why the database did not answer: down for everyone, or this node cut off.

    Down for everyone only on hard evidence: every address refuses (or has no socket),
    or the server itself said it is starting up or shutting down. Everything else
    (timeouts, unreachable routes, a server that accepts and stays silent) is cut off."""
    text = str(failure or "")
    if any(phrase in text for phrase in _NOT_READY):
        return Outage.DOWN_FOR_EVERYONE
    if all(_refused(host, port, timeout) for host, port in _endpoints(target)):
        return Outage.DOWN_FOR_EVERYONE
    return Outage.CUT_OFF


def kill_all(backend: Backend, vm_ids: Iterable[int] | None = None) -> list[int]:
    """Kill every VM the backend runs (or ``vm_ids``) at once, in parallel; return the
    IDs it tried."""
    ids = sorted(backend.list_running() if vm_ids is None else vm_ids)
    if not ids:
        return []

    def one(vm_id: int) -> None:
        try:
            backend.kill(vm_id)
        except BackendError as exc:
            log.error("fencing VM %s failed: %s", vm_id, exc)

    with ThreadPoolExecutor(max_workers=min(16, len(ids)), thread_name_prefix="fence") as pool:
        list(pool.map(one, ids))
    return ids


class Fencer:
    """The fence timer: past the clock's deadline, kill every VM of the node, and again
    every ``recheck`` seconds while the node stays fenced (a start that raced the fence
    is caught by the reconcile loop, which looks at :attr:`fenced` after each start)."""

    def __init__(
        self,
        clock: FenceClock,
        kill: Callable[[], list[int]],
        *,
        on_tick: Callable[[], None] | None = None,
        recheck: float = 1.0,
    ) -> None:
        self.clock = clock
        self._kill = kill
        self._on_tick = on_tick
        self._recheck = recheck
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fenced = False
        self.fence_count = 0  # times this node fenced itself
        self.fenced_at: float | None = None  # boot_clock() of the last fence
        self._last_kill = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hkd-fence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(FENCE_TIMER_PERIOD):
            self.tick()
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except Exception:
                    log.exception("fence timer hook failed")

    def tick(self) -> None:
        now = self.clock.clock()
        if now < self.clock.deadline:
            if self.fenced:
                log.info("heartbeat proved again: leaving the fenced state")
                self.fenced = False
            return
        if not self.fenced:
            self.fenced = True  # first: a start that finishes from now on sees it
            self.fence_count += 1
            self.fenced_at = now
            log.error(
                "no heartbeat proved for %.1f s: fencing (killing this node's VMs)",
                self.clock.timeout,
            )
        elif now - self._last_kill < self._recheck:
            return
        self._last_kill = now
        try:
            killed = self._kill()
        except Exception:
            log.exception("fencing failed")
            return
        if killed:
            log.error("fenced: killed VMs %s", killed)
