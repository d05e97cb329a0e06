"""The nxagent lifecycle table, driven without processes."""

from __future__ import annotations

import pytest

from qvd.vma.nxstate import (
    AGENT_SIGNALS,
    TIMEOUT_PHASE,
    TRANSITIONS,
    X_STATE,
    ActionKind,
    AgentExited,
    AgentSaid,
    AgentSignal,
    AgentSpawned,
    NxMachine,
    NxState,
    Provisioned,
    ProvisionFailed,
    SessionExited,
    StartRequested,
    StopRequested,
    SuspendRequested,
    Tick,
)

TIMEOUTS = {"initiating": 20.0, "listening": 10.0, "suspending": 20.0, "stopping": 20.0}
A = ActionKind


def kinds(step: object) -> list[ActionKind]:
    return [action.kind for action in step.actions]  # type: ignore[attr-defined]


def listening_machine() -> NxMachine:
    machine = NxMachine(TIMEOUTS)
    machine.handle(StartRequested(params={"qvd.vm.user.name": "a"}, accept="10.0.0.1"), 0)
    machine.handle(Provisioned(), 1)
    machine.handle(AgentSpawned(pid=42), 1)
    machine.handle(AgentSaid(signal=AgentSignal.LISTENING), 2)
    return machine


def test_a_session_from_start_to_stop() -> None:
    machine = NxMachine(TIMEOUTS)
    assert machine.x_state == "stopped"
    step = machine.handle(StartRequested(params={"k": "v"}, accept="10.0.0.1"), 0)
    assert (step.after, kinds(step), step.error) == (NxState.PROVISIONING, [A.PROVISION], None)
    assert step.actions[0].params == {"k": "v"}
    assert machine.x_state == "provisioning"
    assert kinds(machine.handle(Provisioned(), 1)) == [A.LAUNCH]
    assert machine.x_state == "starting"
    machine.handle(AgentSpawned(pid=42), 1)
    assert machine.agent_pid == 42
    machine.handle(AgentSaid(signal=AgentSignal.LISTENING), 2)
    assert machine.x_state == "listening"
    step = machine.handle(AgentSaid(signal=AgentSignal.STARTED), 3)
    assert machine.x_state == "connected"
    assert kinds(step) == [A.START_SESSION, A.HOOK_CONNECTED]
    assert machine.deadline is None  # a connected session has no deadline
    machine.handle(AgentSaid(signal=AgentSignal.SUSPENDING), 4)
    assert machine.x_state == "suspending"
    assert kinds(machine.handle(AgentSaid(signal=AgentSignal.SUSPENDED), 5)) == [A.HOOK_SUSPENDED]
    assert machine.x_state == "suspended"
    step = machine.handle(StartRequested(params={"k": "w"}, accept="10.0.0.2"), 6)
    assert kinds(step) == [A.RESUME]
    assert step.actions[0].accept == "10.0.0.2"
    assert machine.x_state == "starting"  # resuming: not yet listening
    machine.handle(AgentSaid(signal=AgentSignal.LISTENING), 7)
    assert machine.x_state == "listening"
    assert kinds(machine.handle(AgentSaid(signal=AgentSignal.STARTED), 8)) == [
        A.START_SESSION,
        A.HOOK_CONNECTED,
    ]
    assert kinds(machine.handle(StopRequested(), 9)) == [A.TERM]
    assert machine.x_state == "stopping"
    step = machine.handle(AgentExited(returncode=0), 10)
    assert kinds(step) == [A.STOP_SESSION, A.HOOK_DISCONNECTED]
    assert machine.x_state == "stopped"
    assert machine.agent_pid is None


def test_listening_times_out_after_qvds_ten_seconds() -> None:
    machine = listening_machine()
    assert machine.deadline == 12.0
    assert kinds(machine.handle(Tick(now=11.9), 11.9)) == []
    assert machine.x_state == "listening"
    step = machine.handle(Tick(now=12.0), 12.0)
    assert kinds(step) == [A.TERM]
    assert machine.x_state == "stopping"
    assert machine.deadline == 32.0
    assert kinds(machine.handle(Tick(now=32.0), 32.0)) == [A.KILL]
    assert machine.x_state == "stopping"


def test_provisioning_and_starting_share_the_initiating_timeout() -> None:
    machine = NxMachine(TIMEOUTS)
    machine.handle(StartRequested(), 0)
    assert machine.deadline == 20.0
    machine.handle(Provisioned(), 5)
    assert machine.deadline == 25.0
    assert kinds(machine.handle(Tick(now=25.0), 25.0)) == [A.TERM]


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        ([StartRequested()], "provisioned"),
        ([StartRequested(), Provisioned()], "starting"),
        ([StartRequested(), Provisioned(), StopRequested()], "stopping"),
    ],
)
def test_x_start_is_refused_while_busy(prepare: list[object], message: str) -> None:
    machine = NxMachine(TIMEOUTS)
    for event in prepare:
        machine.handle(event, 0)  # type: ignore[arg-type]
    before = machine.state
    step = machine.handle(StartRequested(), 1)
    assert step.error is not None
    assert message in step.error
    assert machine.state is before


def test_x_start_on_a_connected_session_suspends_it_and_asks_to_retry() -> None:
    machine = listening_machine()
    machine.handle(AgentSaid(signal=AgentSignal.STARTED), 3)
    step = machine.handle(StartRequested(params={"new": "1"}), 4)
    assert step.error is not None
    assert "retry" in step.error
    assert kinds(step) == [A.HUP]
    assert machine.params == {"qvd.vm.user.name": "a"}  # the refused call changed nothing


def test_x_start_while_listening_changes_nothing() -> None:
    machine = listening_machine()
    step = machine.handle(StartRequested(params={"other": "1"}), 3)
    assert (step.error, kinds(step), machine.x_state) == (None, [], "listening")


def test_stop_during_provisioning_ends_without_an_agent() -> None:
    machine = NxMachine(TIMEOUTS)
    machine.handle(StartRequested(), 0)
    machine.handle(StopRequested(), 1)
    assert machine.x_state == "stopping"
    step = machine.handle(Provisioned(), 2)
    assert (kinds(step), machine.x_state) == ([], "stopped")


def test_failed_provisioning_is_remembered() -> None:
    machine = NxMachine(TIMEOUTS)
    machine.handle(StartRequested(), 0)
    machine.handle(ProvisionFailed(reason="invalid user name"), 1)
    assert (machine.x_state, machine.last_error) == ("stopped", "invalid user name")


def test_the_end_of_the_x_session_stops_the_agent() -> None:
    machine = listening_machine()
    machine.handle(AgentSaid(signal=AgentSignal.STARTED), 3)
    assert kinds(machine.handle(SessionExited(returncode=0), 4)) == [A.TERM]


def test_agent_death_in_any_live_state_means_stopped() -> None:
    for state in (NxState.STARTING, NxState.LISTENING, NxState.CONNECTED, NxState.SUSPENDED):
        machine = NxMachine(TIMEOUTS)
        machine.state = state
        step = machine.handle(AgentExited(returncode=1), 0)
        assert machine.x_state == "stopped"
        assert A.HOOK_DISCONNECTED in kinds(step)


def test_observations_the_table_lacks_are_ignored() -> None:
    machine = NxMachine(TIMEOUTS)
    step = machine.handle(AgentSaid(signal=AgentSignal.SUSPENDED), 0)
    assert (step.before, step.after, kinds(step)) == (NxState.STOPPED, NxState.STOPPED, [])
    assert kinds(machine.handle(SuspendRequested(), 0)) == []


def test_the_table_is_complete_and_closed() -> None:
    assert set(TRANSITIONS) == set(NxState)
    assert set(X_STATE) == set(NxState)
    assert set(X_STATE.values()) == {
        "stopped",
        "starting",
        "provisioning",
        "listening",
        "connected",
        "suspending",
        "suspended",
        "stopping",
    }
    assert set(TIMEOUT_PHASE.values()) == set(TIMEOUTS)
    for row in TRANSITIONS.values():
        assert StopRequested in row
        assert StartRequested in row
    for signals in AGENT_SIGNALS.values():
        assert all(rule.target in NxState for rule in signals.values())
