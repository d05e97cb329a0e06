"""The words of the connect machine (``connect.py``): the events a driver feeds it and
the actions it asks for, as frozen values (h11's ``_events.py``). Each action's
docstring names the events that may answer it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from qvd.db.vmrules import StartDecision
from qvd.l7r.errors import L7rError
from qvd.l7r.store import Runtime

__all__ = [
    "AbortAsked",
    "AbortRequested",
    "AcquireSession",
    "Action",
    "AskToAbort",
    "Begin",
    "ClientGone",
    "Event",
    "Fail",
    "HandOver",
    "NoHost",
    "ReadRuntime",
    "Ready",
    "ReleaseStaleSession",
    "RequestStart",
    "RuntimeRead",
    "SessionAcquired",
    "SessionRefused",
    "StaleReleased",
    "StartRefused",
    "StartRequested",
    "StartX",
    "Transport",
    "Wait",
    "WaitX",
    "Waited",
    "XObserved",
    "XStartFailed",
    "XStarted",
    "XWaitFailed",
]

Transport = Literal["nx", "vnc"]


# Events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Begin:
    """The user is authenticated and the VM is theirs: start."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionAcquired:
    """The session was ``disconnected`` and is now ``connecting`` for this L7R."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRefused:
    """Someone holds the session: the VM's runtime row, and whether this L7R's own
    registry of sessions holds the VM (if the row names this L7R and the registry
    does not, a crash left the session behind)."""

    runtime: Runtime
    held_here: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StaleReleased:
    """The session a crash of this L7R left behind was released."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortAsked:
    """``user_cmd = abort`` was set for the holder (``holder``: its host), or, with no
    holder recorded, the stale session was cleared (``holder`` None)."""

    holder: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Waited:
    """A wait ended: the VM's rows changed (a notification), or its time was up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeRead:
    runtime: Runtime


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRequested:
    """A host was assigned (the load balancer) and ``vm_cmd = start`` written."""

    host_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NoHost:
    """The load balancer found no host for the VM; ``reason`` says why."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRefused:
    """The rules (``qvd.db.vmrules``) said other than REQUEST under the row's lock: the
    VM moved since it was read."""

    decision: StartDecision
    vm_state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class XStarted:
    """``x_start`` answered: the agent's port (None: not said) and the NX cookie."""

    port: int | None
    cookie: str


@dataclass(frozen=True, slots=True, kw_only=True)
class XStartFailed:
    """``x_start`` failed; ``retryable`` unless the VMA refused the call itself."""

    reason: str
    retryable: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class XObserved:
    """The X state ``x_wait`` returned."""

    x_state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class XWaitFailed:
    """``x_wait`` got no answer from the VMA."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientGone:
    """The client closed its connection."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortRequested:
    """An abort for this session (another client takes it over)."""


Event = (
    Begin
    | SessionAcquired
    | SessionRefused
    | StaleReleased
    | AbortAsked
    | Waited
    | RuntimeRead
    | StartRequested
    | NoHost
    | StartRefused
    | XStarted
    | XStartFailed
    | XObserved
    | XWaitFailed
    | ClientGone
    | AbortRequested
)


# Actions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AcquireSession:
    """Take the session if ``disconnected`` → SessionAcquired, else read the runtime →
    SessionRefused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseStaleSession:
    """Release the session this L7R holds in the database only → StaleReleased."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AskToAbort:
    """Ask the holder to let go (``user_cmd = abort``) → AbortAsked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """Wait until ``until`` (a ``now`` value), at most the driver's poll; with
    ``on_change``, also until the VM's rows change → Waited (or ClientGone,
    AbortRequested)."""

    until: float
    on_change: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRuntime:
    """Read the VM's runtime row → RuntimeRead."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestStart:
    """Start the VM by the rules (``vmrules.start``) → StartRequested, NoHost,
    StartRefused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartX:
    """``x_start`` on the VM's VMA with the client's parameters merged with the
    session's (``attempt`` counts from 0) → XStarted, XStartFailed."""

    address: str
    vma_port: int | None
    run_attempts: int
    client_params: Mapping[str, str]
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitX:
    """``x_wait`` (leave ``provisioning``/``starting``) for at most ``timeout`` s →
    XObserved, XWaitFailed."""

    timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """Where the session is: the VM's address, its VMA's port and run (for its
    secret), the agent's port and the NX cookie, and the transport asked for."""

    vm_id: int
    transport: Transport
    address: str
    vma_port: int | None
    run_attempts: int
    x_port: int | None
    cookie: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HandOver:
    """The X session listens: hand the target to the transport."""

    ready: Ready


@dataclass(frozen=True, slots=True, kw_only=True)
class Fail:
    """Give up with ``error``; release the session first when ``release``."""

    error: L7rError
    release: bool


Action = (
    AcquireSession
    | ReleaseStaleSession
    | AskToAbort
    | Wait
    | ReadRuntime
    | RequestStart
    | StartX
    | WaitX
    | HandOver
    | Fail
)
