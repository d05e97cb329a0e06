"""When a VM may be started or stopped: the one rule set of the API, the L7R and the portal.

A start or a stop is a wish written in ``vm_runtimes.vm_cmd``; the VM's node claims it
(``hkd/store.py``: ``claim_start`` takes ``start`` on a ``stopped`` VM, ``claim_stop``
takes ``stop`` on a ``starting``, ``running`` or ``debugging`` one). What may be asked,
by an administrator (API, WAT) or by the VM's user (L7R, portal) alike:

start (``decide_start``)
    ``stopped``, no start pending   → REQUEST: a host from the load balancer (always
                                      chosen afresh: the one a stopped VM may still
                                      name can be gone), ``vm_cmd = start``, the last
                                      error cleared; a stale ``stop``/``busy`` on a
                                      stopped VM is replaced
    ``stopped``, start pending      → PENDING: asked already, its node has not claimed it
    ``starting``/``running``        → UNDERWAY: nothing to ask
    ``stopping``, or a stop pending → STOPPING: start it once it has stopped
    ``zombie``/``debugging``        → REFUSED: an administrator must look at it

stop (``decide_stop``)
    ``stopped``, start pending      → CANCEL_START: not claimed yet, so the start is
                                      taken back (``vm_cmd`` and ``host_id`` cleared)
    a stop pending                  → PENDING: asked already
    ``stopped``                     → STOPPED: nothing to stop
    ``stopping``                    → STOPPING: refused, a stop is already under way
    ``starting``/``running``/
    ``debugging``/``zombie``        → REQUEST: ``vm_cmd = stop`` (a zombie's node is
                                      killing it already; the command is then cleared
                                      with the rest when it is released)

How a caller reports a decision is its own: the API answers whether *this* request did
something (QVD's codes: a start that is PENDING or UNDERWAY is 5130, a stop of a
STOPPED VM 5120), the L7R and the portal answer whether the user's wish holds (a
connect waits for a PENDING start; ``stop_vm`` of a STOPPED VM is "Machine stopped").

``start`` and ``stop`` lock the row, decide, and write with the conditional SQL of
``request_start`` / ``request_stop`` / ``cancel_start``, whose ``WHERE`` is the
decision itself (tested for every state and command): a writer that did not lock
still cannot write a command the rules refuse.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from qvd.db.loadbalancer import Weights, pick_host_for_vm

__all__ = [
    "STOPPABLE",
    "StartDecision",
    "StartOutcome",
    "StopDecision",
    "VmCommandView",
    "VmSnapshot",
    "cancel_start",
    "decide_start",
    "decide_stop",
    "lock",
    "request_start",
    "request_stop",
    "start",
    "stop",
]


class VmCommandView(Protocol):
    """What the rules read of a VM's runtime row (``l7r.store.Runtime`` has it too)."""

    @property
    def vm_state(self) -> str: ...

    @property
    def vm_cmd(self) -> str | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VmSnapshot:
    vm_state: str
    vm_cmd: str | None
    host_id: int | None


class StartDecision(enum.Enum):
    REQUEST = "request"
    PENDING = "pending"
    UNDERWAY = "underway"
    STOPPING = "stopping"
    REFUSED = "refused"

    def __repr__(self) -> str:
        return self.name


class StopDecision(enum.Enum):
    CANCEL_START = "cancel_start"
    PENDING = "pending"
    STOPPED = "stopped"
    STOPPING = "stopping"
    REQUEST = "request"

    def __repr__(self) -> str:
        return self.name


STOPPABLE = ("starting", "running", "debugging", "zombie")
_NEED_ADMIN = ("zombie", "debugging")


def decide_start(vm: VmCommandView) -> StartDecision:
    if vm.vm_state == "stopped":
        return StartDecision.PENDING if vm.vm_cmd == "start" else StartDecision.REQUEST
    if vm.vm_state == "stopping" or vm.vm_cmd == "stop":
        return StartDecision.STOPPING
    if vm.vm_state in _NEED_ADMIN:
        return StartDecision.REFUSED
    return StartDecision.UNDERWAY  # starting, running


def decide_stop(vm: VmCommandView) -> StopDecision:
    if vm.vm_state == "stopped" and vm.vm_cmd == "start":
        return StopDecision.CANCEL_START
    if vm.vm_cmd == "stop":
        return StopDecision.PENDING
    if vm.vm_state == "stopped":
        return StopDecision.STOPPED
    if vm.vm_state == "stopping":
        return StopDecision.STOPPING
    return StopDecision.REQUEST  # one of STOPPABLE


# ---- the conditional SQL (each WHERE is its decision) ------------------------------------


def lock(conn: Connection, vm_id: int) -> VmSnapshot | None:
    """The VM's state and command, its row locked until the transaction ends."""
    row = conn.execute(
        text("SELECT vm_state, vm_cmd, host_id FROM vm_runtimes WHERE vm_id = :v FOR UPDATE"),
        {"v": vm_id},
    ).first()
    return None if row is None else VmSnapshot(vm_state=row[0], vm_cmd=row[1], host_id=row[2])


def request_start(conn: Connection, vm_id: int, host_id: int) -> bool:
    """``vm_cmd = start`` on ``host_id`` if the rules say REQUEST."""
    row = conn.execute(
        text(
            "UPDATE vm_runtimes SET host_id = :h, vm_cmd = 'start', last_error = NULL "
            " WHERE vm_id = :v AND vm_state = 'stopped' AND vm_cmd IS DISTINCT FROM 'start' "
            "RETURNING vm_id"
        ),
        {"v": vm_id, "h": host_id},
    ).first()
    return row is not None


def request_stop(conn: Connection, vm_id: int) -> bool:
    """``vm_cmd = stop`` if the rules say REQUEST."""
    row = conn.execute(
        text(
            "UPDATE vm_runtimes SET vm_cmd = 'stop' WHERE vm_id = :v "
            "   AND vm_state IN ('starting', 'running', 'debugging', 'zombie') "
            "   AND vm_cmd IS DISTINCT FROM 'stop' RETURNING vm_id"
        ),
        {"v": vm_id},
    ).first()
    return row is not None


def cancel_start(conn: Connection, vm_id: int) -> bool:
    """Take back a start its node has not claimed (the rules say CANCEL_START)."""
    row = conn.execute(
        text(
            "UPDATE vm_runtimes SET vm_cmd = NULL, host_id = NULL "
            " WHERE vm_id = :v AND vm_state = 'stopped' AND vm_cmd = 'start' RETURNING vm_id"
        ),
        {"v": vm_id},
    ).first()
    return row is not None


# ---- the whole operations ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartOutcome:
    """What ``start`` found (``vm``) and decided; ``host_id`` when it asked for a start."""

    decision: StartDecision
    vm: VmSnapshot
    host_id: int | None = None


def start(session: Session, vm_id: int, weights: Weights) -> StartOutcome:
    """Decide a start under the row's lock and, for REQUEST, choose the host and ask it.

    ``NoHostAvailable`` (from the load balancer) when no node can take the VM; a VM
    that does not exist is ``LookupError``.
    """
    conn = session.connection()
    vm = lock(conn, vm_id)
    if vm is None:
        raise LookupError(f"VM {vm_id} does not exist")
    decision = decide_start(vm)
    if decision is not StartDecision.REQUEST:
        return StartOutcome(decision=decision, vm=vm)
    host_id = pick_host_for_vm(session, vm_id, weights)
    if not request_start(conn, vm_id, host_id):  # the lock makes this unreachable
        raise RuntimeError(f"VM {vm_id}: the start of a locked stopped VM did not apply")
    return StartOutcome(decision=decision, vm=vm, host_id=host_id)


def stop(conn: Connection, vm_id: int) -> tuple[StopDecision, VmSnapshot]:
    """Decide a stop under the row's lock and write what it needs."""
    vm = lock(conn, vm_id)
    if vm is None:
        raise LookupError(f"VM {vm_id} does not exist")
    decision = decide_stop(vm)
    if decision is StopDecision.REQUEST:
        request_stop(conn, vm_id)
    elif decision is StopDecision.CANCEL_START:
        cancel_start(conn, vm_id)
    return decision, vm
