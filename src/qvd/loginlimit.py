"""The one failed-login limiter, used by the L7R (users' logins) and the admin API
(administrators' logins). Pure: the clock is passed in (``time.monotonic`` by default).

After ``attempts`` failures within ``window`` seconds for a key, that key is refused
until the oldest failure leaves the window (``attempts`` 0: no limit). Callers choose
the keys (a login name, a source address); a success should clear the login's key
only, not the address's: one good password must not reset a guessing address.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from threading import Lock

__all__ = ["FailureLimiter", "Refusal"]

_FIRST_SWEEP = 1024  # keys held before the first sweep of stale ones


@dataclass(frozen=True, slots=True)
class Refusal:
    """A key that may not try now: its failures in the window and the seconds to wait."""

    key: str
    failures: int
    wait: float


class FailureLimiter:
    def __init__(
        self, attempts: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._sweep_at = _FIRST_SWEEP
        self._lock = Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(key, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        return seen

    def refusals(self, *keys: str) -> list[Refusal]:
        """The keys (in the order given) that may not try now."""
        now = self._clock()
        refused: list[Refusal] = []
        with self._lock:
            for key in keys:
                seen = self._recent(key, now)
                if self.attempts > 0 and len(seen) >= self.attempts:
                    refused.append(Refusal(key, len(seen), seen[0] + self.window - now))
                if not seen:
                    self._failures.pop(key, None)
        return refused

    def blocked_for(self, *keys: str) -> float:
        """Seconds until every key may try again (0: allowed now)."""
        return max((r.wait for r in self.refusals(*keys)), default=0.0)

    def failed(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)
            if len(self._failures) >= self._sweep_at:
                self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget the keys whose failures all left the window: a key that never comes
        back (a guessed login, a passing address) is otherwise kept for ever. Run when
        the table has doubled since the last sweep, so its cost is spread over failures."""
        stale = [key for key, seen in self._failures.items() if seen[-1] <= now - self.window]
        for key in stale:
            del self._failures[key]
        self._sweep_at = max(_FIRST_SWEEP, 2 * len(self._failures))

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
