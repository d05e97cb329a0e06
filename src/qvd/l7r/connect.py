"""The connect sequence of reference §3.4 as one pure state machine.

Rules of this module (as ``vma/nxstate.py`` and h11's ``_state.py``): every decision of
a connect lives here; it knows nothing of databases, sockets, threads or clocks. The
driver (``flow.py``) feeds events (rows it read, results of what it did, the end of a
wait, the client's departure, an abort) with the current time to
``ConnectMachine.handle`` and carries out the one ``Action`` each ``Step`` returns,
which yields the next event. Each step also says what to tell the client (QVD's
progress texts, sent as 102s; from ``states.Handshake``).

Phases, with the action the driver is carrying out in each::

    NEW ─Begin─▶ ACQUIRING (AcquireSession) ─acquired─▶ CHECKING_VM (ReadRuntime)
      ACQUIRING ─refused, held by this L7R's crash─▶ RELEASING_STALE ─▶ ACQUIRING
      ACQUIRING ─refused─▶ ASKING_ABORT (AskToAbort) ─▶ AWAITING_HOLDER (Wait) ─▶ ACQUIRING
    CHECKING_VM ─running─▶ STARTING_X (StartX)
      ─stopped─▶ REQUESTING_START (RequestStart) ─▶ AWAITING_VM
      ─starting, start pending─▶ AWAITING_VM (Wait) ─▶ READING_VM (ReadRuntime) ─running─▶
      ─stopping─▶ AWAITING_STOPPED (Wait) ─▶ CHECKING_VM
    STARTING_X ─x_start ok─▶ AWAITING_X (WaitX) ─listening─▶ DONE (HandOver)
      ─x_start failed, tries left─▶ CHECKING_X_RETRY (ReadRuntime) ─▶ X_BACKOFF (Wait) ─▶
      STARTING_X
      AWAITING_X ─the VMA did not answer─▶ X_PAUSE (Wait) ─▶ AWAITING_X
    any live phase ─client gone─▶ FAILED; from CHECKING_VM on, also ─abort─▶ FAILED

``TRANSITIONS`` lists, for each phase and event type, the phases the event may lead
to; ``handle`` refuses an event the table lacks (``UnexpectedEvent``: a driver bug)
and checks each move against it. Timeouts are config values given at construction
(``Timeouts``); deadlines are computed from the ``now`` given with each event.
``transport`` (``"nx"`` or ``"vnc"``) is carried to the ``HandOver``: both end where the
X session listens, and what follows belongs to the door the client came through.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from qvd.config import Config
from qvd.db.vmrules import StartDecision, decide_start
from qvd.l7r.connect_events import (
    AbortAsked,
    AbortRequested,
    AcquireSession,
    Action,
    AskToAbort,
    Begin,
    ClientGone,
    Event,
    Fail,
    HandOver,
    NoHost,
    ReadRuntime,
    Ready,
    ReleaseStaleSession,
    RequestStart,
    RuntimeRead,
    SessionAcquired,
    SessionRefused,
    StaleReleased,
    StartRefused,
    StartRequested,
    StartX,
    Transport,
    Wait,
    Waited,
    WaitX,
    XObserved,
    XStarted,
    XStartFailed,
    XWaitFailed,
)
from qvd.l7r.errors import L7rError, Unavailable
from qvd.l7r.states import ConnectState, Handshake
from qvd.l7r.store import Runtime

__all__ = [
    "TRANSITIONS",
    "AbortAsked",
    "AbortRequested",
    "Aborted",
    "AcquireSession",
    "Action",
    "AskToAbort",
    "Begin",
    "ClientGone",
    "ConnectMachine",
    "Event",
    "Fail",
    "HandOver",
    "IllegalMove",
    "NoHost",
    "Phase",
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
    "Step",
    "Timeouts",
    "Transport",
    "UnexpectedEvent",
    "Wait",
    "WaitX",
    "Waited",
    "XObserved",
    "XStartFailed",
    "XStarted",
    "XWaitFailed",
    "taken_over",
]

X_WAIT_SLICE = 1.0  # seconds one x_wait may block: an abort is seen between two calls
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 1.0  # pause before an x_start retry / x_wait again


class Aborted(Unavailable):
    """Another client took the session over while this one was connecting."""


class UnexpectedEvent(RuntimeError):
    """An event the table lacks in the current phase (a bug in the driver)."""


class IllegalMove(RuntimeError):
    """A move the table lacks (a bug in this module)."""


class Phase(enum.Enum):
    NEW = "new"
    ACQUIRING = "acquiring"
    RELEASING_STALE = "releasing_stale"
    ASKING_ABORT = "asking_abort"
    AWAITING_HOLDER = "awaiting_holder"
    CHECKING_VM = "checking_vm"
    AWAITING_STOPPED = "awaiting_stopped"
    REQUESTING_START = "requesting_start"
    AWAITING_VM = "awaiting_vm"
    READING_VM = "reading_vm"
    STARTING_X = "starting_x"
    CHECKING_X_RETRY = "checking_x_retry"
    X_BACKOFF = "x_backoff"
    AWAITING_X = "awaiting_x"
    X_PAUSE = "x_pause"
    DONE = "done"
    FAILED = "failed"

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds each wait may last (QVD's ``internal.l7r.*`` tokens) and x_start's tries."""

    takeover: float
    vm_start: float
    vm_stop: float
    x_start: float
    x_start_tries: int

    @classmethod
    def from_config(cls, config: Config) -> Timeouts:
        return cls(
            takeover=config.get_int("internal.l7r.timeout.takeover"),
            vm_start=config.get_int("internal.l7r.timeout.vm_start"),
            vm_stop=config.get_int("internal.l7r.timeout.vm_stop"),
            x_start=config.get_int("internal.l7r.timeout.x_start"),
            x_start_tries=max(1, config.get_int("internal.l7r.retry.x_start")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What ``handle`` decided: phases before and after, the action to carry out, and
    the progress texts to send first."""

    before: Phase
    after: Phase
    action: Action
    progress: tuple[str, ...] = field(default_factory=tuple)


# The table -----------------------------------------------------------------------------

P = Phase
_GONE: frozenset[Phase] = frozenset({P.FAILED})
_AFTER_LOOK = frozenset(
    {P.FAILED, P.STARTING_X, P.REQUESTING_START, P.AWAITING_VM, P.AWAITING_STOPPED}
)
_ACQUIRE_PHASES = (P.ACQUIRING, P.RELEASING_STALE, P.ASKING_ABORT, P.AWAITING_HOLDER)

TRANSITIONS: dict[Phase, dict[type[Event], frozenset[Phase]]] = {
    P.NEW: {Begin: frozenset({P.ACQUIRING})},
    P.ACQUIRING: {
        SessionAcquired: frozenset({P.CHECKING_VM}),
        SessionRefused: frozenset({P.RELEASING_STALE, P.ASKING_ABORT, P.AWAITING_HOLDER, P.FAILED}),
    },
    P.RELEASING_STALE: {StaleReleased: frozenset({P.ACQUIRING})},
    P.ASKING_ABORT: {AbortAsked: frozenset({P.AWAITING_HOLDER, P.FAILED})},
    P.AWAITING_HOLDER: {Waited: frozenset({P.ACQUIRING})},
    P.CHECKING_VM: {RuntimeRead: _AFTER_LOOK},
    P.AWAITING_STOPPED: {Waited: frozenset({P.CHECKING_VM})},
    P.REQUESTING_START: {
        StartRequested: frozenset({P.AWAITING_VM}),
        NoHost: frozenset({P.FAILED}),
        StartRefused: frozenset({P.AWAITING_VM, P.AWAITING_STOPPED, P.FAILED}),
    },
    P.AWAITING_VM: {Waited: frozenset({P.READING_VM})},
    P.READING_VM: {RuntimeRead: frozenset({P.STARTING_X, P.AWAITING_VM, P.FAILED})},
    P.STARTING_X: {
        XStarted: frozenset({P.AWAITING_X}),
        XStartFailed: frozenset({P.CHECKING_X_RETRY, P.FAILED}),
    },
    P.CHECKING_X_RETRY: {RuntimeRead: frozenset({P.X_BACKOFF, P.FAILED})},
    P.X_BACKOFF: {Waited: frozenset({P.STARTING_X})},
    P.AWAITING_X: {
        XObserved: frozenset({P.DONE, P.AWAITING_X, P.FAILED}),
        XWaitFailed: frozenset({P.X_PAUSE, P.FAILED}),
    },
    P.X_PAUSE: {Waited: frozenset({P.AWAITING_X, P.FAILED})},
    P.DONE: {},
    P.FAILED: {},
}
for _phase, _row in TRANSITIONS.items():
    if _phase not in (P.NEW, P.DONE, P.FAILED):
        _row[ClientGone] = _GONE  # the client may leave in every phase
        if _phase not in _ACQUIRE_PHASES:
            _row[AbortRequested] = _GONE  # once the session is ours, it may be taken


def taken_over(runtime: Runtime, host_id: int) -> bool:
    """The session this L7R acquired is no longer its own: asked to abort, or held by
    another L7R."""
    return runtime.user_cmd == "abort" or runtime.l7r_host_id != host_id


def _backoff(attempt: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2.0**attempt)


class ConnectMachine:
    """One connect of ``vm_id`` through the L7R on ``host_id``."""

    def __init__(
        self,
        vm_id: int,
        *,
        host_id: int,
        timeouts: Timeouts,
        client_params: Mapping[str, str],
        transport: Transport = "nx",
    ) -> None:
        self.vm_id = vm_id
        self.host_id = host_id
        self.transport: Transport = transport
        self.phase = P.NEW
        self.acquired = False  # the session is ours in the database (release on failure)
        self._timeouts = timeouts
        self._client_params = dict(client_params)
        self._hs = Handshake(vm_id)
        self._asked = False
        self._takeover_deadline = 0.0
        self._stop_deadline: float | None = None
        self._vm_deadline: float | None = None
        self._x_deadline = 0.0
        self._x_hard_deadline = 0.0
        self._x_attempt = 0
        self._x_failure = ""
        self._x_pauses = 0
        self._running: Runtime | None = None  # the VM as it was found running
        self._address = ""
        self._x_port: int | None = None
        self._cookie = ""
        self._progress: list[str] = []

    # ---- the one entry point ---------------------------------------------------------
    def handle(self, event: Event, now: float) -> Step:
        """Apply one event at time ``now``; returns the next action and what to say."""
        before = self.phase
        allowed = TRANSITIONS[before].get(type(event))
        if allowed is None:
            raise UnexpectedEvent(f"{type(event).__name__} in phase {before!r}")
        self._progress = []
        after, action = self._decide(event, now)
        if after not in allowed:
            raise IllegalMove(f"{before!r} --{type(event).__name__}--> {after!r}")
        self.phase = after
        return Step(before=before, after=after, action=action, progress=tuple(self._progress))

    # ---- decisions --------------------------------------------------------------------
    def _decide(self, event: Event, now: float) -> tuple[Phase, Action]:
        if isinstance(event, ClientGone):
            return self._fail(Unavailable("the client went away"))
        if isinstance(event, AbortRequested):
            return self._fail(self._aborted())
        match self.phase:
            case P.NEW:
                self._takeover_deadline = now + self._timeouts.takeover
                return P.ACQUIRING, AcquireSession()
            case P.ACQUIRING | P.RELEASING_STALE | P.ASKING_ABORT | P.AWAITING_HOLDER:
                return self._acquiring(event, now)
            case P.CHECKING_VM:
                assert isinstance(event, RuntimeRead)
                return self._look(event.runtime, now)
            case P.AWAITING_STOPPED:
                return P.CHECKING_VM, ReadRuntime()
            case P.REQUESTING_START:
                return self._start_answered(event, now)
            case P.AWAITING_VM:
                return P.READING_VM, ReadRuntime()
            case P.READING_VM:
                assert isinstance(event, RuntimeRead)
                return self._vm_seen(event.runtime, now)
            case P.STARTING_X | P.CHECKING_X_RETRY | P.X_BACKOFF:
                return self._x_starting(event, now)
            case P.AWAITING_X | P.X_PAUSE:
                return self._x_waiting(event, now)
        raise UnexpectedEvent(f"{type(event).__name__} in phase {self.phase!r}")

    def _say(self, to: ConnectState) -> None:
        if self._hs.state is not to:
            self._progress.append(self._hs.move(to))

    def _fail(self, error: L7rError) -> tuple[Phase, Action]:
        self._hs.move(ConnectState.FAILED)
        return P.FAILED, Fail(error=error, release=self.acquired)

    def _aborted(self) -> Aborted:
        return Aborted(f"the session of VM {self.vm_id} was taken over by another client")

    # ---- taking the session ------------------------------------------------------------
    def _acquiring(self, event: Event, now: float) -> tuple[Phase, Action]:
        if isinstance(event, SessionAcquired):
            self.acquired = True
            self._say(ConnectState.ACQUIRED)
            return P.CHECKING_VM, ReadRuntime()
        if isinstance(event, SessionRefused):
            rt = event.runtime
            if rt.l7r_host_id == self.host_id and not event.held_here:
                return P.RELEASING_STALE, ReleaseStaleSession()  # left by a crash
            if not self._asked or rt.user_cmd is None:
                return P.ASKING_ABORT, AskToAbort()
            return self._await_holder(now)
        if isinstance(event, StaleReleased | Waited):
            return P.ACQUIRING, AcquireSession()
        assert isinstance(event, AbortAsked)
        self._say(ConnectState.ABORTING_OTHER)
        self._asked = self._asked or event.holder is not None
        return self._await_holder(now)

    def _await_holder(self, now: float) -> tuple[Phase, Action]:
        if now >= self._takeover_deadline:
            return self._fail(
                Unavailable(
                    f"Unable to acquire VM {self.vm_id}: another client holds its session "
                    f"and did not let go within {self._timeouts.takeover:g} s; close other "
                    "clients"
                )
            )
        return P.AWAITING_HOLDER, Wait(until=self._takeover_deadline, on_change=True)

    # ---- getting the VM running ------------------------------------------------------
    def _look(self, rt: Runtime, now: float) -> tuple[Phase, Action]:
        """The VM as found after the session was taken (or once it stopped)."""
        if taken_over(rt, self.host_id):
            return self._fail(self._aborted())
        decision = decide_start(rt)
        if rt.vm_state == "running" and rt.vm_address and decision is not StartDecision.STOPPING:
            return self._start_x(rt, rt.vm_address)
        if decision is StartDecision.REQUEST:
            self._say(ConnectState.ASSIGNING)
            return P.REQUESTING_START, RequestStart()
        return self._follow(decision, rt.vm_state, now)

    def _follow(self, decision: StartDecision, vm_state: str, now: float) -> tuple[Phase, Action]:
        """Where a VM that needs no start request goes."""
        if decision is StartDecision.STOPPING:
            if self._stop_deadline is None:
                self._stop_deadline = now + self._timeouts.vm_stop
            elif now >= self._stop_deadline:
                return self._fail(
                    Unavailable(
                        f"VM {self.vm_id} is still stopping after {self._timeouts.vm_stop:g} s"
                    )
                )
            return P.AWAITING_STOPPED, Wait(until=self._stop_deadline, on_change=True)
        if decision is StartDecision.REFUSED:
            return self._fail(
                Unavailable(f"VM {self.vm_id} is {vm_state}; an administrator must look at it")
            )
        return self._await_vm(now)  # PENDING, UNDERWAY (starting, running without address)

    def _await_vm(self, now: float) -> tuple[Phase, Action]:
        if self._vm_deadline is None:
            self._vm_deadline = now + self._timeouts.vm_start
        self._say(ConnectState.WAITING_VM)
        return P.AWAITING_VM, Wait(until=self._vm_deadline, on_change=True)

    def _start_answered(self, event: Event, now: float) -> tuple[Phase, Action]:
        if isinstance(event, StartRequested):
            self._say(ConnectState.STARTING_VM)
            return self._await_vm(now)
        if isinstance(event, NoHost):
            return self._fail(
                Unavailable(f"Unable to assign VM {self.vm_id} to a host: {event.reason}")
            )
        assert isinstance(event, StartRefused)
        return self._follow(event.decision, event.vm_state, now)

    def _vm_seen(self, rt: Runtime, now: float) -> tuple[Phase, Action]:
        """The VM while waiting for it to run."""
        assert self._vm_deadline is not None
        if taken_over(rt, self.host_id):
            return self._fail(self._aborted())
        if rt.vm_state == "running" and rt.vm_address:
            return self._start_x(rt, rt.vm_address)
        if rt.vm_state == "stopped" and rt.vm_cmd != "start":
            # the start was claimed and failed, or taken back: the node says why
            reason = f": {rt.last_error}" if rt.last_error else ""
            return self._fail(Unavailable(f"Failed to start virtual machine {self.vm_id}{reason}"))
        if decide_start(rt) is StartDecision.REFUSED:
            return self._fail(
                Unavailable(f"VM {self.vm_id} is {rt.vm_state}; an administrator must look at it")
            )
        if now >= self._vm_deadline:
            return self._fail(
                Unavailable(
                    f"VM {self.vm_id} did not reach state 'running' within "
                    f"{self._timeouts.vm_start:g} s (it is {rt.vm_state})"
                )
            )
        return P.AWAITING_VM, Wait(until=self._vm_deadline, on_change=True)

    # ---- the X session -----------------------------------------------------------------
    def _start_x(self, rt: Runtime, address: str) -> tuple[Phase, Action]:
        self._running = rt
        self._address = address
        self._say(ConnectState.X_STARTING)
        return P.STARTING_X, self._x_start_action()

    def _x_start_action(self) -> StartX:
        rt = self._running
        assert rt is not None
        return StartX(
            address=self._address, vma_port=rt.vma_port, run_attempts=rt.run_attempts,
            client_params=self._client_params, attempt=self._x_attempt,
        )  # fmt: skip

    def _x_starting(self, event: Event, now: float) -> tuple[Phase, Action]:
        if isinstance(event, XStarted):
            self._x_port = event.port
            self._cookie = event.cookie
            self._x_deadline = now + self._timeouts.x_start
            self._x_hard_deadline = now + self._timeouts.vm_start
            self._say(ConnectState.WAITING_X)
            return P.AWAITING_X, WaitX(timeout=min(X_WAIT_SLICE, self._timeouts.x_start))
        if isinstance(event, XStartFailed):
            self._x_failure = event.reason
            self._x_attempt += 1
            if event.retryable and self._x_attempt < self._timeouts.x_start_tries:
                return P.CHECKING_X_RETRY, ReadRuntime()
            return self._fail(
                Unavailable(
                    f"the VM agent of VM {self.vm_id} refused to start X: {self._x_failure}"
                )
            )
        if isinstance(event, RuntimeRead):
            if taken_over(event.runtime, self.host_id):
                return self._fail(self._aborted())
            pause = _backoff(self._x_attempt - 1)
            return P.X_BACKOFF, Wait(until=now + pause, on_change=False)
        assert isinstance(event, Waited)
        return P.STARTING_X, self._x_start_action()

    def _wait_x(self, now: float) -> tuple[Phase, Action]:
        left = min(self._x_deadline, self._x_hard_deadline) - now
        if left <= 0:
            return self._fail(
                Unavailable(
                    f"the X session of VM {self.vm_id} did not listen within "
                    f"{self._timeouts.x_start:g} s"
                )
            )
        return P.AWAITING_X, WaitX(timeout=min(X_WAIT_SLICE, left))

    def _x_waiting(self, event: Event, now: float) -> tuple[Phase, Action]:
        if isinstance(event, Waited):
            return self._wait_x(now)
        if isinstance(event, XWaitFailed):
            self._x_failure = event.reason
            if min(self._x_deadline, self._x_hard_deadline) <= now:
                return self._fail(
                    Unavailable(
                        f"the X session of VM {self.vm_id} did not listen within "
                        f"{self._timeouts.x_start:g} s ({event.reason})"
                    )
                )
            pause = _backoff(self._x_pauses)
            self._x_pauses += 1
            return P.X_PAUSE, Wait(until=now + pause, on_change=False)
        assert isinstance(event, XObserved)
        state = event.x_state
        if state == "listening":
            self._say(ConnectState.RELAYING)
            return P.DONE, HandOver(ready=self._ready())
        if state == "provisioning":  # the user's home is being made: time is given again
            self._x_deadline = now + self._timeouts.x_start
        elif state != "starting":
            return self._fail(
                Unavailable(f"the X session of VM {self.vm_id} is {state}, not listening")
            )
        return self._wait_x(now)

    def _ready(self) -> Ready:
        rt = self._running
        assert rt is not None
        return Ready(
            vm_id=self.vm_id, transport=self.transport, address=self._address,
            vma_port=rt.vma_port, run_attempts=rt.run_attempts,
            x_port=self._x_port if self._x_port is not None else rt.x_port,
            cookie=self._cookie,
        )  # fmt: skip
