"""The nxagent session lifecycle as one pure transition table.

Rules of this module (as h11's ``_state.py``): all transition logic lives here; it
knows nothing of processes, sockets, clocks or files. The caller feeds events (RPC
requests, observations of the agent's output, process exits, the current time) to
``NxMachine.handle`` and carries out the ``Action`` values it returns.

States and their ``x_state`` (QVD's names, reference §4.2)::

    stopped ─x_start─▶ provisioning ─provisioned─▶ starting ─"Waiting for connection"─▶
    listening ─"Session started"─▶ connected ─"Suspending"─▶ suspending ─"suspended"─▶
    suspended ─x_start─▶ resuming (x_state "starting") ─"Waiting"─▶ listening ─▶ connected
    any state with an agent ─x_stop / timeout─▶ stopping ─agent exited─▶ stopped

``listening`` is reported only once the agent has said it waits for a connection, so
a caller that sees ``listening`` can connect at once. Timeouts (``initiating`` for
provisioning/starting/resuming, ``listening``, ``suspending``, ``stopping``) follow
QVD; when one expires the agent gets TERM (and KILL when stopping takes too long).
Requests the table lacks are refused with a reason; observations it lacks are ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "TIMEOUT_PHASE",
    "TRANSITIONS",
    "X_STATE",
    "Action",
    "ActionKind",
    "AgentExited",
    "AgentSaid",
    "AgentSignal",
    "AgentSpawnFailed",
    "AgentSpawned",
    "Event",
    "NxMachine",
    "NxState",
    "ProvisionFailed",
    "Provisioned",
    "Rule",
    "SessionExited",
    "StartRequested",
    "Step",
    "StopRequested",
    "SuspendRequested",
    "Tick",
    "TimedOut",
]


class NxState(enum.Enum):
    STOPPED = "stopped"
    PROVISIONING = "provisioning"
    STARTING = "starting"
    LISTENING = "listening"
    CONNECTED = "connected"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    RESUMING = "resuming"
    STOPPING = "stopping"

    def __repr__(self) -> str:
        return self.value


X_STATE: dict[NxState, str] = {
    NxState.STOPPED: "stopped",
    NxState.PROVISIONING: "provisioning",
    NxState.STARTING: "starting",
    NxState.LISTENING: "listening",
    NxState.CONNECTED: "connected",
    NxState.SUSPENDING: "suspending",
    NxState.SUSPENDED: "suspended",
    NxState.RESUMING: "starting",
    NxState.STOPPING: "stopping",
}

# Which QVD timeout (internal.nxagent.timeout.<phase>) bounds each state.
TIMEOUT_PHASE: dict[NxState, str] = {
    NxState.PROVISIONING: "initiating",
    NxState.STARTING: "initiating",
    NxState.RESUMING: "initiating",
    NxState.LISTENING: "listening",
    NxState.SUSPENDING: "suspending",
    NxState.STOPPING: "stopping",
}


class AgentSignal(enum.Enum):
    """What a line of nxagent output tells (see ``agentlog.parse_agent_line``)."""

    LISTENING = "listening"
    STARTED = "started"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    TERMINATING = "terminating"


# Events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRequested:
    """``x_start``: session properties and the address the tunnel will connect from."""

    params: Mapping[str, str] = field(default_factory=dict)
    accept: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SuspendRequested:
    """``x_suspend``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRequested:
    """``x_stop`` (and poweroff)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Provisioned:
    """The user exists and owns a home."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionFailed:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpawned:
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpawnFailed:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSaid:
    """nxagent printed a line that means ``signal``."""

    signal: AgentSignal


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentExited:
    returncode: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionExited:
    """The user's X session (the first X client) ended."""

    returncode: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """Time passes; ``now`` is a monotonic clock reading in seconds."""

    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut:
    """The current state's deadline passed (made from a ``Tick`` by the machine)."""


Event = (
    StartRequested
    | SuspendRequested
    | StopRequested
    | Provisioned
    | ProvisionFailed
    | AgentSpawned
    | AgentSpawnFailed
    | AgentSaid
    | AgentExited
    | SessionExited
    | TimedOut
)

_REQUESTS = (StartRequested,)


# Actions -----------------------------------------------------------------------------


class ActionKind(enum.Enum):
    PROVISION = "provision"  # create the user and home from the x_start properties
    LAUNCH = "launch"  # write options and X cookie, run the connect hook, spawn nxagent
    RESUME = "resume"  # rewrite options (new tunnel address), HUP the agent, connect hook
    HUP = "hup"  # suspend a connected agent
    TERM = "term"
    KILL = "kill"
    START_SESSION = "start_session"  # the user's X session, once the agent has a client
    STOP_SESSION = "stop_session"  # whatever is left of the X session after the agent died
    HOOK_CONNECTED = "hook_connected"
    HOOK_SUSPENDED = "hook_suspended"
    HOOK_DISCONNECTED = "hook_disconnected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    kind: ActionKind
    params: Mapping[str, str] = field(default_factory=dict)
    accept: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One transition: next state, actions, and for requests an error to answer."""

    target: NxState
    actions: tuple[ActionKind, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What ``handle`` decided: the state before and after, actions, error if refused."""

    before: NxState
    after: NxState
    actions: tuple[Action, ...] = ()
    error: str | None = None


S = NxState
A = ActionKind
_GONE = Rule(target=S.STOPPED, actions=(A.STOP_SESSION, A.HOOK_DISCONNECTED))
_TERM = Rule(target=S.STOPPING, actions=(A.TERM,))
_STOPPING = Rule(target=S.STOPPING)

TRANSITIONS: dict[NxState, dict[type[Event], Rule]] = {
    S.STOPPED: {
        StartRequested: Rule(target=S.PROVISIONING, actions=(A.PROVISION,)),
        StopRequested: Rule(target=S.STOPPED),
        SuspendRequested: Rule(target=S.STOPPED),
        AgentExited: Rule(target=S.STOPPED),
    },
    S.PROVISIONING: {
        Provisioned: Rule(target=S.STARTING, actions=(A.LAUNCH,)),
        ProvisionFailed: Rule(target=S.STOPPED),
        StartRequested: Rule(target=S.PROVISIONING, error="session is being provisioned"),
        StopRequested: _STOPPING,
        SuspendRequested: Rule(target=S.PROVISIONING),
        TimedOut: _STOPPING,
    },
    S.STARTING: {
        AgentSpawned: Rule(target=S.STARTING),
        AgentSpawnFailed: Rule(target=S.STOPPED),
        AgentSaid: Rule(target=S.STARTING),  # refined by signal below
        AgentExited: _GONE,
        StartRequested: Rule(target=S.STARTING, error="session is starting"),
        StopRequested: _TERM,
        SuspendRequested: Rule(target=S.STARTING),
        TimedOut: _TERM,
    },
    S.LISTENING: {
        AgentSaid: Rule(target=S.LISTENING),
        AgentExited: _GONE,
        StartRequested: Rule(target=S.LISTENING),
        StopRequested: _TERM,
        SuspendRequested: Rule(target=S.LISTENING),
        SessionExited: _TERM,
        TimedOut: _TERM,
    },
    S.CONNECTED: {
        AgentSaid: Rule(target=S.CONNECTED),
        AgentExited: _GONE,
        StartRequested: Rule(
            target=S.CONNECTED,
            actions=(A.HUP,),
            error="session is connected elsewhere; it is being suspended, retry",
        ),
        StopRequested: _TERM,
        SuspendRequested: Rule(target=S.CONNECTED, actions=(A.HUP,)),
        SessionExited: _TERM,
    },
    S.SUSPENDING: {
        AgentSaid: Rule(target=S.SUSPENDING),
        AgentExited: _GONE,
        StartRequested: Rule(target=S.SUSPENDING, error="session is being suspended, retry"),
        StopRequested: _TERM,
        SuspendRequested: Rule(target=S.SUSPENDING),
        SessionExited: _TERM,
        TimedOut: _TERM,
    },
    S.SUSPENDED: {
        StartRequested: Rule(target=S.RESUMING, actions=(A.RESUME,)),
        AgentSaid: Rule(target=S.SUSPENDED),
        AgentExited: _GONE,
        StopRequested: _TERM,
        SuspendRequested: Rule(target=S.SUSPENDED),
        SessionExited: _TERM,
    },
    S.RESUMING: {
        AgentSaid: Rule(target=S.RESUMING),
        AgentExited: _GONE,
        StartRequested: Rule(target=S.RESUMING, error="session is resuming"),
        StopRequested: _TERM,
        SuspendRequested: Rule(target=S.RESUMING),
        SessionExited: _TERM,
        TimedOut: _TERM,
    },
    S.STOPPING: {
        Provisioned: Rule(target=S.STOPPED),
        ProvisionFailed: Rule(target=S.STOPPED),
        AgentSpawnFailed: Rule(target=S.STOPPED),
        AgentExited: _GONE,
        StartRequested: Rule(target=S.STOPPING, error="session is stopping, retry"),
        StopRequested: _STOPPING,
        SuspendRequested: _STOPPING,
        TimedOut: Rule(target=S.STOPPING, actions=(A.KILL,)),
    },
}

# What the agent's output means in each state (the AgentSaid rows, by signal).
AGENT_SIGNALS: dict[NxState, dict[AgentSignal, Rule]] = {
    S.STARTING: {
        AgentSignal.LISTENING: Rule(target=S.LISTENING),
        AgentSignal.STARTED: Rule(target=S.CONNECTED, actions=(A.START_SESSION, A.HOOK_CONNECTED)),
        AgentSignal.TERMINATING: _STOPPING,
    },
    S.LISTENING: {
        AgentSignal.STARTED: Rule(target=S.CONNECTED, actions=(A.START_SESSION, A.HOOK_CONNECTED)),
        AgentSignal.TERMINATING: _STOPPING,
    },
    S.CONNECTED: {
        AgentSignal.SUSPENDING: Rule(target=S.SUSPENDING),
        AgentSignal.SUSPENDED: Rule(target=S.SUSPENDED, actions=(A.HOOK_SUSPENDED,)),
        AgentSignal.TERMINATING: _STOPPING,
    },
    S.SUSPENDING: {
        AgentSignal.SUSPENDED: Rule(target=S.SUSPENDED, actions=(A.HOOK_SUSPENDED,)),
        AgentSignal.TERMINATING: _STOPPING,
    },
    S.SUSPENDED: {
        AgentSignal.LISTENING: Rule(target=S.LISTENING),
        AgentSignal.TERMINATING: _STOPPING,
    },
    S.RESUMING: {
        AgentSignal.LISTENING: Rule(target=S.LISTENING),
        AgentSignal.STARTED: Rule(target=S.CONNECTED, actions=(A.START_SESSION, A.HOOK_CONNECTED)),
        AgentSignal.TERMINATING: _STOPPING,
    },
}


class NxMachine:
    """The session state plus the deadline of the current state.

    ``timeouts`` maps a phase name (``TIMEOUT_PHASE`` values) to seconds.
    """

    def __init__(self, timeouts: Mapping[str, float]) -> None:
        self.state = NxState.STOPPED
        self.deadline: float | None = None
        self.agent_pid: int | None = None
        self.params: Mapping[str, str] = {}
        self.accept = ""
        self.last_error: str | None = None
        self._timeouts = dict(timeouts)

    @property
    def x_state(self) -> str:
        return X_STATE[self.state]

    def _rule(self, event: Event) -> Rule | None:
        row = TRANSITIONS[self.state]
        if isinstance(event, AgentSaid):
            return AGENT_SIGNALS.get(self.state, {}).get(event.signal, row.get(AgentSaid))
        return row.get(type(event))

    def handle(self, event: Event | Tick, now: float) -> Step:
        """Apply one event at time ``now``; returns what changed and what to do."""
        before = self.state
        if isinstance(event, Tick):
            if self.deadline is None or event.now < self.deadline:
                return Step(before=before, after=before)
            event = TimedOut()
        rule = self._rule(event)
        if rule is None:
            if isinstance(event, _REQUESTS):
                return Step(
                    before=before,
                    after=before,
                    error=f"{type(event).__name__} not possible in state {before.value}",
                )
            return Step(before=before, after=before)
        if isinstance(event, StartRequested) and rule.error is None:
            self.params = dict(event.params)
            self.accept = event.accept
        if isinstance(event, AgentSpawned):
            self.agent_pid = event.pid
        if isinstance(event, ProvisionFailed | AgentSpawnFailed):
            self.last_error = event.reason
        if isinstance(event, AgentExited):
            self.agent_pid = None
        self.state = rule.target
        if rule.target != before or isinstance(event, TimedOut):
            phase = TIMEOUT_PHASE.get(rule.target)
            self.deadline = None if phase is None else now + self._timeouts[phase]
        actions = tuple(
            Action(kind=kind, params=self.params, accept=self.accept) for kind in rule.actions
        )
        return Step(before=before, after=self.state, actions=actions, error=rule.error)
