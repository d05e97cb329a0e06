"""The one failed-login limiter, used by the L7R (users' logins) and the admin API
(administrators' logins). Pure: the clock is passed in (``time.monotonic`` by default).

Backoff, not a lock: every key (a source address, a login) counts its failures of the
last ``window`` seconds. Past ``attempts`` of them each failure makes the key wait
before its next try, 1 s, then 2, 4 … up to ``window`` seconds; as failures leave the
window the waits shrink away. ``attempts`` 0: no limit.

Who may be held back by whom (:meth:`FailureLimiter.verdict`, asked after the password
was verified):

- an address in backoff is refused whatever it sends (it is the guesser's own key, so
  the callers may also refuse it before verifying, :meth:`FailureLimiter.blocked_for`);
- a login in backoff holds back only the addresses that are failing themselves; a right
  password from an address that has not been failing logs in at once, so nobody can
  lock a user (or the superadmin) out by guessing from elsewhere, while a spread-out
  guess gets one free try per address before the login's backoff applies to it.
"""

from __future__ import annotations

import math
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


@dataclass(slots=True)
class _Failures:
    times: deque[float]  # of the failures still in the window (at most ``_kept``)
    until: float  # no try before this time


class FailureLimiter:
    def __init__(
        self, attempts: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._keys: dict[str, _Failures] = {}
        # past this many failures the wait is at its cap: older ones need not be kept
        self._kept = attempts + math.ceil(math.log2(max(window, 2.0))) + 1
        self._sweep_at = _FIRST_SWEEP
        self._lock = Lock()

    def delay(self, failures: int) -> float:
        """Seconds a key with this many failures in the window waits after the last."""
        if self.attempts <= 0 or failures < self.attempts:
            return 0.0
        return float(min(self.window, 2.0 ** (failures - self.attempts)))

    # ---- state (call with the lock held) ------------------------------------------------
    def _count(self, key: str, now: float) -> int:
        held = self._keys.get(key)
        if held is None:
            return 0
        while held.times and held.times[0] <= now - self.window:
            held.times.popleft()
        return len(held.times)

    def _wait(self, key: str, now: float) -> float:
        held = self._keys.get(key)
        return 0.0 if held is None else max(0.0, held.until - now)

    def _fail(self, key: str, now: float) -> None:
        held = self._keys.setdefault(key, _Failures(deque(maxlen=self._kept), now))
        self._count(key, now)
        held.times.append(now)
        held.until = max(held.until, now + self.delay(len(held.times)))

    # ---- what callers ask -------------------------------------------------------------------
    def refusals(self, *keys: str) -> list[Refusal]:
        """The keys (in the order given) that may not try now."""
        now = self._clock()
        with self._lock:
            return [
                Refusal(key, self._count(key, now), wait)
                for key in keys
                if (wait := self._wait(key, now)) > 0
            ]

    def blocked_for(self, *keys: str) -> float:
        """Seconds until every key may try again (0: allowed now)."""
        return max((r.wait for r in self.refusals(*keys)), default=0.0)

    def failing(self, key: str) -> bool:
        """True when ``key`` failed recently (its score has not decayed away)."""
        now = self._clock()
        with self._lock:
            return self._count(key, now) > 0

    def verdict(self, address_key: str, user_key: str | None, *, accepted: bool) -> float:
        """Record one login whose credentials were checked (``accepted``: they were right)
        and answer the seconds it must wait (0: answer with the check's result; more:
        refuse it, right or wrong, saying when to try again). The user's backoff holds
        the address back only when the address has been failing itself; a wrong try is
        counted against both keys."""
        now = self._clock()
        with self._lock:
            wait = self._wait(address_key, now)
            if user_key is not None and self._count(address_key, now) > 0:
                wait = max(wait, self._wait(user_key, now))
            if not accepted and self.attempts > 0:
                self._fail(address_key, now)
                if user_key is not None:
                    self._fail(user_key, now)
                if len(self._keys) >= self._sweep_at:
                    self._sweep(now)
        return wait

    def failed(self, *keys: str) -> None:
        """Count one failure against each key (the checks are the caller's)."""
        if self.attempts <= 0:
            return
        now = self._clock()
        with self._lock:
            for key in keys:
                self._fail(key, now)
            if len(self._keys) >= self._sweep_at:
                self._sweep(now)

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures (an address's stay: one good password must not
        reset a guessing address)."""
        with self._lock:
            self._keys.pop(key, None)

    def _sweep(self, now: float) -> None:
        """Forget the keys whose failures all left the window and whose wait is over: a
        key that never comes back (a guessed login, a passing address) is otherwise kept
        for ever. Run when the table has doubled since the last sweep, so its cost is
        spread over failures."""
        stale = [
            key
            for key, held in self._keys.items()
            if held.until <= now and (not held.times or held.times[-1] <= now - self.window)
        ]
        for key in stale:
            del self._keys[key]
        self._sweep_at = max(_FIRST_SWEEP, 2 * len(self._keys))
