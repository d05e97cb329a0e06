"""Caps on the long requests in flight (``connect_to_vm``, ``stop_vm``), and the
fair queue that serves logins.

A long request holds a worker thread of the connect pool while it waits (for the
session, the VM to start, X to listen, the VM to stop). ``ConnectGate`` admits one
only under three caps, and refuses the rest at once with ``Busy`` (503, the cap in
the body) rather than queueing them behind work that can last minutes:

- per source address, counted from the request head, before the login is checked,
  so a flood from one address does not even queue its logins;
- per user, counted once the login is checked;
- per node: the connect pool's size, so an admitted request never waits for a worker.

The per-user cap is well below the pool (``ConnectLimits`` refuses otherwise): one
user can never take every worker, and logins and lists run in pools of their own.

``FairPool`` runs jobs on a few threads, queued per key and served round-robin over
the keys with work (each key's jobs in arrival order). Keyed by (address, claimed
login), a burst of distinct users is served in arrival order, while one user's
twenty logins take turns with everyone else's instead of making them wait.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from qvd.config import Config, ConfigError
from qvd.l7r.errors import Busy

__all__ = ["ConnectGate", "ConnectLimits", "FairPool", "Ticket"]

T = TypeVar("T")

log = logging.getLogger("qvd.l7r.limits")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectLimits:
    """How many long requests may be in flight, per user, per address, per node."""

    per_user: int = 4
    per_address: int = 16
    workers: int = 32

    def __post_init__(self) -> None:
        if min(self.per_user, self.per_address, self.workers) < 1:
            raise ValueError("the L7R connect limits must be at least 1")
        if self.per_user * 2 > self.workers:
            raise ValueError(
                f"l7r.limits.connects_per_user ({self.per_user}) must be at most half of "
                f"l7r.limits.connect_workers ({self.workers}): one user must not be able "
                "to take every connect worker"
            )

    @classmethod
    def from_config(cls, config: Config) -> ConnectLimits:
        return cls(
            per_user=config.get_int("l7r.limits.connects_per_user"),
            per_address=config.get_int("l7r.limits.connects_per_address"),
            workers=config.get_int("l7r.limits.connect_workers"),
        )


class Ticket:
    """One long request's place under the caps; ``release`` gives it back (once)."""

    def __init__(self, gate: ConnectGate, address: str) -> None:
        self._gate = gate
        self.address = address
        self.user_id: int | None = None
        self.handed_over = False  # its work runs in a thread, whose end gives it back
        self._released = False

    def bind_user(self, user_id: int, login: str) -> None:
        """Count this request against its user and the node (raises ``Busy``)."""
        self._gate._bind(self, user_id, login)

    def release(self) -> None:
        self._gate._release(self)


class ConnectGate:
    """Counts the long requests in flight; thread-safe (tickets end in worker threads)."""

    def __init__(self, limits: ConnectLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._by_address: dict[str, int] = {}
        self._by_user: dict[int, int] = {}
        self._working = 0

    def follow(self, config: Config) -> None:
        """Take the per-user and per-address caps of ``config`` (a change of the
        database's rows: live for the next request); the worker count stays, its pool
        is made once. Caps that do not fit are logged and the current ones kept."""
        try:
            new = ConnectLimits.from_config(config)
            new = ConnectLimits(
                per_user=new.per_user, per_address=new.per_address, workers=self.limits.workers
            )
        except (ConfigError, ValueError) as exc:
            log.warning("L7R connect limits unchanged: %s", exc)
            return
        with self._lock:
            self.limits = new

    def admit(self, address: str) -> Ticket:
        """A ticket for a request from ``address``, or ``Busy`` over its cap."""
        with self._lock:
            count = self._by_address.get(address, 0)
            if count >= self.limits.per_address:
                raise Busy(
                    f"The requested virtual machine is not available: {count} connect or "
                    f"stop requests from your address are in progress (the limit is "
                    f"{self.limits.per_address}), retry later."
                )
            self._by_address[address] = count + 1
            return Ticket(self, address)

    def _bind(self, ticket: Ticket, user_id: int, login: str) -> None:
        with self._lock:
            if ticket._released or ticket.user_id is not None:
                raise RuntimeError("a ticket is bound to a user once, before its release")
            count = self._by_user.get(user_id, 0)
            if count >= self.limits.per_user:
                raise Busy(
                    f"The requested virtual machine is not available: {login} already has "
                    f"{count} connect or stop requests in progress (the limit is "
                    f"{self.limits.per_user}), retry later."
                )
            if self._working >= self.limits.workers:
                raise Busy(
                    "The requested virtual machine is not available: this node is serving "
                    f"{self._working} connect or stop requests, its most; retry later."
                )
            self._by_user[user_id] = count + 1
            self._working += 1
            ticket.user_id = user_id

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._released:
                return
            ticket._released = True
            _decrement(self._by_address, ticket.address)
            if ticket.user_id is not None:
                _decrement(self._by_user, ticket.user_id)
                self._working -= 1

    def in_flight(self) -> tuple[int, int, int]:
        """(tickets by address, bound to users, distinct users) right now."""
        with self._lock:
            return sum(self._by_address.values()), self._working, len(self._by_user)


def _decrement(counts: dict[Any, int], key: object) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


_Job = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]]


class FairPool:
    """``workers`` threads serving per-key queues round-robin (see the module doc)."""

    def __init__(self, workers: int, name: str) -> None:
        self._cond = threading.Condition()
        self._queues: dict[Hashable, deque[_Job]] = {}
        self._turns: deque[Hashable] = deque()  # keys with queued jobs, each once
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = deque()
                self._turns.append(key)
            queue.append((future, fn, args))
            self._cond.notify()
        return future

    def pending(self) -> int:
        with self._cond:
            return sum(len(queue) for queue in self._queues.values())

    def shutdown(self) -> None:
        """Cancel what is queued; running jobs finish, then the threads end."""
        with self._cond:
            self._closed = True
            for queue in self._queues.values():
                for future, _, _ in queue:
                    future.cancel()
            self._queues.clear()
            self._turns.clear()
            self._cond.notify_all()

    def _next(self) -> _Job | None:
        with self._cond:
            while not self._turns:
                if self._closed:
                    return None
                self._cond.wait()
            key = self._turns.popleft()
            queue = self._queues[key]
            job = queue.popleft()
            if queue:
                self._turns.append(key)
            else:
                del self._queues[key]
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the waiting request, as executors do
                future.set_exception(exc)
            else:
                future.set_result(result)
