"""The HKD's Prometheus metrics (``qvd_node_*``), kept in a registry of its own.

One ``HkdMetrics`` per daemon (tests run several HKDs in one process; the global
default registry of prometheus_client is never used). The reconciler and the daemon
call it in single lines (``metrics.vm_running(vm_id)``); the timing and the
bookkeeping are here. Labels are bounded: VM states, claim kinds and results, never a
VM name, a user or an address.

- ``qvd_node_vms{state}``: the VMs of this node by the state its last reconcile saw
  (the node's own view, kept in memory: a scrape costs no database query);
- ``qvd_node_vm_start_seconds``: a start command claimed → the VMA answered (running);
  ``qvd_node_vm_backend_start_seconds``: the backend's prepare + start;
  ``qvd_node_vm_stop_seconds``: stopping began (a claimed stop, or the HKD's own
  decision) → nothing of the VM runs;
- ``qvd_node_claims_total{kind,result}``: command claims (``start``/``stop``/``host``),
  ``won`` or ``lost`` (another HKD, or the command changed first);
- ``qvd_node_fencing_events_total`` and ``qvd_node_fenced``; ``qvd_node_lost_peers_total``
  (peers this node marked lost).

Timings use ``time.monotonic`` of this process: a start claimed by an HKD that then
restarted is not timed (its adoption says nothing of how long the start took).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["VM_STATES", "HkdMetrics"]

VM_STATES = ("stopped", "starting", "running", "debugging", "stopping", "zombie")
# every series shown from the first scrape (a host command is claimed, or not there)
CLAIM_LABELS = (
    ("start", "won"),
    ("start", "lost"),
    ("stop", "won"),
    ("stop", "lost"),
    ("host", "won"),
)
# the states a claim of each kind takes a VM from (qvd.hkd.store.claim_start/claim_stop)
_CLAIMABLE_FROM = {"start": ("stopped",), "stop": ("starting", "running", "debugging")}
# a container starts in about a second, a virtual machine boots a kernel: up to minutes
START_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)
STOP_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class _NodeView(Collector):
    """``qvd_node_vms`` and the fencing figures, read from memory at each scrape."""

    def __init__(self, metrics: HkdMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "qvd_node_vms", "VMs of this node by the state its last reconcile saw",
            labels=["state"],
        )  # fmt: skip
        counts = self._metrics.vm_state_counts()
        for state in VM_STATES:
            states.add_metric([state], counts.get(state, 0))
        yield states
        fences, fenced = self._metrics.fencing()
        yield CounterMetricFamily(
            "qvd_node_fencing_events",
            "Times this node fenced itself (no heartbeat proved in time: its VMs killed)",
            value=fences,
        )
        yield GaugeMetricFamily(
            "qvd_node_fenced", "1 while this node is fenced (it starts nothing)", value=fenced
        )


class HkdMetrics:
    """The HKD's counters and timers; thread-safe (workers, the ticker and the cluster
    monitor call it)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[int, str] = {}
        self._start_claimed: dict[int, float] = {}
        self._stop_began: dict[int, float] = {}
        self._fencing: Callable[[], tuple[int, bool]] = lambda: (0, False)
        r = self.registry
        self.vm_start = Histogram(
            "qvd_node_vm_start_seconds",
            "From a start command claimed to the VM running (its VMA answered)",
            registry=r, buckets=START_BUCKETS,
        )  # fmt: skip
        self.backend_start = Histogram(
            "qvd_node_vm_backend_start_seconds",
            "The backend's prepare and start of a VM (before its VMA answers)",
            registry=r, buckets=START_BUCKETS,
        )  # fmt: skip
        self.vm_stop = Histogram(
            "qvd_node_vm_stop_seconds",
            "From stopping begun (a claimed stop or the HKD's decision) to nothing running",
            registry=r, buckets=STOP_BUCKETS,
        )  # fmt: skip
        self.claims = Counter(
            "qvd_node_claims", "Command claims by kind and result (won or lost)",
            ["kind", "result"], registry=r,
        )  # fmt: skip
        for kind, result in CLAIM_LABELS:
            self.claims.labels(kind, result)
        self.lost_peers = Counter(
            "qvd_node_lost_peers", "Peer nodes this node marked lost (their VMs released)",
            registry=r,
        )  # fmt: skip
        r.register(_NodeView(self))

    # ---- the node's view ----------------------------------------------------------------
    def vm_state(self, vm_id: int, state: str | None) -> None:
        """What a reconcile of ``vm_id`` ended in; None: not this node's (forgotten)."""
        with self._lock:
            if state is None:
                self._states.pop(vm_id, None)
                self._start_claimed.pop(vm_id, None)
                self._stop_began.pop(vm_id, None)
            elif state in VM_STATES:
                self._states[vm_id] = state

    def vm_state_counts(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {}
            for state in self._states.values():
                counts[state] = counts.get(state, 0) + 1
            return counts

    def watch_fencing(self, read: Callable[[], tuple[int, bool]]) -> None:
        """Where the fencing figures are read at each scrape: (times fenced, fenced now)."""
        self._fencing = read

    def fencing(self) -> tuple[int, bool]:
        return self._fencing()

    # ---- claims and timings ---------------------------------------------------------------
    def claimed(self, kind: str, vm_id: int | None, won: bool, state: str = "") -> None:
        """A claim of a ``start``, ``stop`` or ``host`` command on a VM seen in
        ``state``; a won start or stop of ``vm_id`` starts its timer. A claim that could
        not be won from that state (a stop of a VM already stopping: the command waits)
        is no contest and not counted."""
        if not won:
            if state in _CLAIMABLE_FROM.get(kind, ()):
                self.claims.labels(kind, "lost").inc()
            return
        self.claims.labels(kind, "won").inc()
        if vm_id is None:
            return
        if kind == "start":
            with self._lock:
                self._stop_began.pop(vm_id, None)
                self._start_claimed[vm_id] = self._clock()
        elif kind == "stop":
            self.stop_began(vm_id)

    def backend_started(self, seconds: float) -> None:
        self.backend_start.observe(seconds)

    def vm_running(self, vm_id: int) -> None:
        """The VMA answered for the first time since its start."""
        with self._lock:
            began = self._start_claimed.pop(vm_id, None)
        if began is not None:
            self.vm_start.observe(self._clock() - began)

    def stop_began(self, vm_id: int) -> None:
        """The VM is ``stopping`` from now (kept if it already was: the first counts)."""
        with self._lock:
            self._start_claimed.pop(vm_id, None)
            self._stop_began.setdefault(vm_id, self._clock())

    def vm_released(self, vm_id: int) -> None:
        """Nothing of the VM runs any more; a stop that was timed ends here."""
        with self._lock:
            began = self._stop_began.pop(vm_id, None)
            self._start_claimed.pop(vm_id, None)
        if began is not None:
            self.vm_stop.observe(self._clock() - began)

    def host_claimed(self, command: str | None) -> None:
        """What a look for a host command found (None: there was none)."""
        if command is not None:
            self.claimed("host", None, True)

    def peers_lost(self, count: int) -> None:
        self.lost_peers.inc(count)
