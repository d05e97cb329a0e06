"""What one node's L7R shares with its other front door, the user portal.

One database engine, one LISTEN connection (``Notifier``), one connect flow, one
registry of the sessions this node relays and one set of caps and worker pools: a
takeover between an NX client (port ``l7r.port``) and a browser (the portal) then works
whichever door each came through, and neither door can starve the other of threads.

``L7rServer`` builds the core in ``start()`` and hands it to each attached service
(``L7rServer(..., attach=[factory])``: ``factory(core)`` returns something with
``start()``/``stop()``; started after the L7R listens, stopped before it closes).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine

from qvd.config import Config
from qvd.db import LiveConfig
from qvd.l7r.endpoints import Node
from qvd.l7r.flow import ConnectFlow
from qvd.l7r.history import HistoryRecorder
from qvd.l7r.limits import ConnectGate, FairPool
from qvd.l7r.notify import Notifier

__all__ = ["AttachFactory", "Attached", "L7rCore", "Sessions"]

T = TypeVar("T")


class Sessions:
    """Sessions relaying on this node (NX or browser), by VM: the abort of each, for
    takeovers (``user_cmd = abort`` for this host) and for shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_vm: dict[int, Callable[[], None]] = {}

    def add(self, vm_id: int, abort: Callable[[], None]) -> None:
        with self._lock:
            self._by_vm[vm_id] = abort

    def remove(self, vm_id: int, abort: Callable[[], None]) -> None:
        with self._lock:
            if self._by_vm.get(vm_id) is abort:
                del self._by_vm[vm_id]

    def count(self) -> int:
        with self._lock:
            return len(self._by_vm)

    def holds(self, vm_id: int) -> bool:
        with self._lock:
            return vm_id in self._by_vm

    def abort(self, vm_id: int) -> None:
        with self._lock:
            abort = self._by_vm.get(vm_id)
        if abort is not None:
            abort()

    def abort_all(self) -> None:
        with self._lock:
            aborts = list(self._by_vm.values())
        for abort in aborts:
            abort()


@dataclass(frozen=True, slots=True, kw_only=True)
class L7rCore:
    config: Config  # the file configuration (``live.get()``: with the database's rows)
    live: LiveConfig
    engine: Engine
    node: Node  # login (the auth chain), recheck, node checks, the VM list
    flow: ConnectFlow
    sessions: Sessions
    notifier: Notifier
    gate: ConnectGate  # caps per address / user / node for long work (connects)
    logins: FairPool  # argon2 logins, fair per (address, login)
    quick: ThreadPoolExecutor  # short database work only
    connects: ThreadPoolExecutor  # long work admitted by ``gate`` (connect flows)
    host_id: int
    host_address: str
    ssl_context: ssl.SSLContext | None  # the L7R's server context (None: TLS off)
    cert_files: tuple[Path, Path] | None  # (cert, key) behind it, when made from files
    history: HistoryRecorder  # session history: logins, connects, takeovers

    async def quickly(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the quick pool, awaited from the event loop (short database
        work only: nothing that waits for a VM)."""
        return await asyncio.get_running_loop().run_in_executor(self.quick, fn, *args)


class Attached(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


AttachFactory = Callable[[L7rCore], Attached]
