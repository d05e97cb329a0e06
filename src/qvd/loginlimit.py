"""Failed-login limits per user and per source address (pure; the clock is passed in).

After ``attempts`` failures within ``window`` seconds for a key, that key is refused
until the oldest failure leaves the window. A success clears the user's key (not the
address's: one good password must not reset a guessing address).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from threading import Lock

__all__ = ["FailureLimiter"]


class FailureLimiter:
    def __init__(self, attempts: int, window: float, clock: Callable[[], float]) -> None:
        self._attempts = attempts
        self._window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(key, deque())
        while seen and seen[0] <= now - self._window:
            seen.popleft()
        return seen

    def blocked_for(self, *keys: str) -> float:
        """Seconds until every key may try again (0: allowed now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                seen = self._recent(key, now)
                if self._attempts > 0 and len(seen) >= self._attempts:
                    wait = max(wait, seen[0] + self._window - now)
                if not seen:
                    self._failures.pop(key, None)
        return wait

    def failed(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
