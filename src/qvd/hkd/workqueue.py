"""A keyed work queue in the style of client-go's: it holds keys, never events.

- A key waiting in the queue is there once, however often it is added.
- A key is handed to one worker at a time; added again while in flight, it is queued
  again when that worker calls ``done``.
- ``add_after`` schedules a key for later (a wait that is not an error);
  ``add_rate_limited`` schedules it with a per-key exponential backoff (an error),
  which ``forget`` resets.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["WorkQueue"]

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Thread-safe keyed queue with delays and per-key backoff."""

    def __init__(
        self,
        *,
        base_delay: float = 0.05,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cond = threading.Condition()
        self._ready: deque[K] = deque()
        self._queued: set[K] = set()
        self._in_flight: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._base = base_delay
        self._max = max_delay
        self._clock = clock
        self._closed = False

    # ---- adding ------------------------------------------------------------------------
    def add(self, key: K) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._closed:
            return
        if key in self._in_flight:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (self._clock() + delay, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: K) -> float:
        """Schedule ``key`` after its next backoff delay; return that delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = float(min(self._base * (2**failures), self._max))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    # ---- taking ------------------------------------------------------------------------
    def _promote_due_locked(self) -> float | None:
        """Move due delayed keys to the ready queue; return seconds to the next one."""
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self._add_locked(key)
        return self._delayed[0][0] - now if self._delayed else None

    def get(self, timeout: float | None = None) -> K | None:
        """The next key (now in flight), or None on timeout or after ``close``."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                next_due = self._promote_due_locked()
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._in_flight.add(key)
                    return key
                if self._closed:
                    return None
                waits = [w for w in (next_due,) if w is not None]
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    waits.append(left)
                self._cond.wait(min(waits) if waits else None)

    def done(self, key: K) -> None:
        """The worker is finished with ``key``; re-queue it if it was added meanwhile."""
        with self._cond:
            self._in_flight.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_locked(key)

    def close(self) -> None:
        """Wake every waiting worker; ``get`` returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)
