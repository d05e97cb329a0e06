"""The connect machine in memory, event by event: no socket, no database, no clock.

Every test takes ``seen``, the set of (phase, event type, next phase) moves it made;
the last test runs them all again and checks that together they made every move of
``connect.TRANSITIONS`` (so a move added to the table needs a test here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from qvd.config import Config
from qvd.db.vmrules import StartDecision
from qvd.l7r import connect as m
from qvd.l7r.connect import Phase as P
from qvd.l7r.errors import Unavailable
from qvd.l7r.store import Runtime

Seen = set[tuple[m.Phase, type, m.Phase]]
VM, HOST, OTHER = 7, 1, 2
TIMEOUTS = m.Timeouts(takeover=30, vm_start=270, vm_stop=120, x_start=10, x_start_tries=3)
T0 = 1000.0


@pytest.fixture
def seen() -> Seen:
    return set()


def runtime(**changes: Any) -> Runtime:
    """The VM's row as the L7R reads it: by default running, our session connecting."""
    base = Runtime(
        vm_state="running", vm_cmd=None, host_id=HOST, vm_address="10.0.0.5", vma_port=3030,
        x_port=4100, user_state="connecting", user_cmd=None, l7r_host_id=HOST,
        last_error=None, run_attempts=3,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


STOPPED = runtime(vm_state="stopped", host_id=None, vm_address=None, vma_port=None, x_port=None)
STARTING = runtime(vm_state="starting", vm_address=None)


class Connect:
    """One machine, the time, the texts it said and the last step."""

    def __init__(self, seen: Seen, *, transport: m.Transport = "nx", **timeouts: Any) -> None:
        self.seen = seen
        self.machine = m.ConnectMachine(
            VM, host_id=HOST, timeouts=dataclasses.replace(TIMEOUTS, **timeouts),
            client_params={"qvd.client.geometry": "1024x768"}, transport=transport,
        )  # fmt: skip
        self.now = T0
        self.texts: list[str] = []
        self.step = self.feed(m.Begin())

    def feed(self, event: m.Event, *, after: float = 0.0) -> m.Step:
        self.now += after
        step = self.machine.handle(event, self.now)
        self.seen.add((step.before, type(event), step.after))
        self.texts.extend(step.progress)
        self.step = step
        return step

    @property
    def action(self) -> m.Action:
        return self.step.action

    @property
    def phase(self) -> m.Phase:
        return self.machine.phase

    def failure(self) -> m.Fail:
        assert self.phase is P.FAILED, self.phase
        assert isinstance(self.action, m.Fail)
        return self.action

    # ---- ways to a phase -----------------------------------------------------------------
    def acquired(self) -> Connect:
        self.feed(m.SessionAcquired())
        return self

    def starting_x(self) -> Connect:
        self.acquired().feed(m.RuntimeRead(runtime=runtime()))
        return self

    def awaiting_x(self) -> Connect:
        self.starting_x().feed(m.XStarted(port=4101, cookie="c00k1e"))
        return self


def text(state: str) -> str:
    return {
        "acquired": f"Session acquired for VM_ID: {VM}",
        "aborting": f"Aborting contending session for VM_ID: {VM}",
        "assigning": f"Assigning VM {VM} to host",
        "starting_vm": "Starting virtual machine",
        "waiting_vm": "Waiting for VM to reach state 'running'",
        "x_starting": f"Starting X session at VM {VM}",
        "waiting_x": f"Waiting for X session to come up on VM {VM}",
        "relaying": f"Connecting X session for VM_ID: {VM}",
    }[state]


# ---- whole connects ----------------------------------------------------------------------


def test_a_running_vm_connects_with_qvds_texts(seen: Seen) -> None:
    c = Connect(seen)
    assert isinstance(c.action, m.AcquireSession)
    c.feed(m.SessionAcquired())
    assert c.machine.acquired
    assert isinstance(c.action, m.ReadRuntime)
    c.feed(m.RuntimeRead(runtime=runtime()))
    assert c.action == m.StartX(
        address="10.0.0.5", vma_port=3030, run_attempts=3,
        client_params={"qvd.client.geometry": "1024x768"}, attempt=0,
    )  # fmt: skip
    c.feed(m.XStarted(port=4101, cookie="c00k1e"))
    assert c.action == m.WaitX(timeout=m.X_WAIT_SLICE)
    c.feed(m.XObserved(x_state="listening"), after=0.2)
    assert c.phase is P.DONE
    assert c.action == m.HandOver(
        ready=m.Ready(
            vm_id=VM, transport="nx", address="10.0.0.5", vma_port=3030, run_attempts=3,
            x_port=4101, cookie="c00k1e",
        )
    )  # fmt: skip
    assert c.texts == [text(s) for s in ("acquired", "x_starting", "waiting_x", "relaying")]


def test_a_stopped_vm_gets_a_host_and_starts_then_the_vnc_transport_is_carried(
    seen: Seen,
) -> None:
    c = Connect(seen, transport="vnc").acquired()
    c.feed(m.RuntimeRead(runtime=STOPPED))
    assert c.phase is P.REQUESTING_START
    assert isinstance(c.action, m.RequestStart)
    c.feed(m.StartRequested(host_id=HOST))
    assert c.action == m.Wait(until=T0 + 270, on_change=True)
    c.feed(m.Waited(), after=0.5)
    assert isinstance(c.action, m.ReadRuntime)
    c.feed(m.RuntimeRead(runtime=STARTING))  # claimed by its node, not running yet
    assert c.action == m.Wait(until=T0 + 270, on_change=True), "the deadline stays"
    c.feed(m.Waited(), after=0.5)
    c.feed(m.RuntimeRead(runtime=runtime(x_port=None)))
    c.feed(m.XStarted(port=None, cookie="k"))
    c.feed(m.XObserved(x_state="listening"))
    assert isinstance(c.action, m.HandOver)
    assert c.action.ready.transport == "vnc"
    assert c.action.ready.x_port is None, "no port said, none read: the driver's default"
    assert c.texts == [
        text(s)
        for s in (
            "acquired", "assigning", "starting_vm", "waiting_vm", "x_starting", "waiting_x",
            "relaying",
        )
    ]  # fmt: skip


def test_the_agents_port_falls_back_to_the_runtime_row(seen: Seen) -> None:
    c = Connect(seen).starting_x()
    c.feed(m.XStarted(port=None, cookie="k"))
    c.feed(m.XObserved(x_state="listening"))
    assert isinstance(c.action, m.HandOver)
    assert c.action.ready.x_port == 4100


# ---- taking the session --------------------------------------------------------------------


def test_takeover_asks_the_holder_once_and_waits_for_it(seen: Seen) -> None:
    c = Connect(seen)
    held = runtime(user_state="connected", l7r_host_id=OTHER)
    c.feed(m.SessionRefused(runtime=held, held_here=False))
    assert isinstance(c.action, m.AskToAbort)
    c.feed(m.AbortAsked(holder=OTHER))
    assert c.action == m.Wait(until=T0 + 30, on_change=True)
    assert c.texts == [text("aborting")]
    c.feed(m.Waited(), after=1)
    assert isinstance(c.action, m.AcquireSession)
    # still held, the abort still asked: not asked again, waited for
    c.feed(m.SessionRefused(runtime=dataclasses.replace(held, user_cmd="abort"), held_here=False))
    assert c.phase is P.AWAITING_HOLDER
    c.feed(m.Waited(), after=1)
    # the holder let go and a third client took it, without an abort asked: ask it
    c.feed(m.SessionRefused(runtime=held, held_here=False))
    assert isinstance(c.action, m.AskToAbort)
    c.feed(m.AbortAsked(holder=OTHER))
    assert c.texts == [text("aborting")], "said once"
    c.feed(m.Waited(), after=1)
    c.feed(m.SessionAcquired())
    assert c.texts == [text("aborting"), text("acquired")]
    assert c.phase is P.CHECKING_VM


def test_a_session_held_by_another_client_of_this_l7r_is_aborted_too(seen: Seen) -> None:
    c = Connect(seen)
    c.feed(m.SessionRefused(runtime=runtime(user_state="connected"), held_here=True))
    assert isinstance(c.action, m.AskToAbort)


def test_a_stale_session_with_no_holder_is_cleared_then_taken(seen: Seen) -> None:
    c = Connect(seen)
    c.feed(m.SessionRefused(runtime=runtime(l7r_host_id=None), held_here=False))
    c.feed(m.AbortAsked(holder=None))  # cleared: nobody to wait for, no abort pending
    c.feed(m.Waited())
    c.feed(m.SessionRefused(runtime=runtime(l7r_host_id=None), held_here=False))
    assert isinstance(c.action, m.AskToAbort), "no holder was asked: ask (clear) again"


def test_a_session_left_by_a_crash_of_this_l7r_is_released_and_taken(seen: Seen) -> None:
    c = Connect(seen)
    c.feed(m.SessionRefused(runtime=runtime(user_state="connected"), held_here=False))
    assert isinstance(c.action, m.ReleaseStaleSession)
    c.feed(m.StaleReleased())
    assert isinstance(c.action, m.AcquireSession)
    c.feed(m.SessionAcquired())
    assert c.texts == [text("acquired")], "no contending session was announced"


def test_takeover_timeout(seen: Seen) -> None:
    c = Connect(seen)
    held = runtime(user_state="connected", l7r_host_id=OTHER)
    c.feed(m.SessionRefused(runtime=held, held_here=False))
    c.feed(m.AbortAsked(holder=OTHER), after=29.9)
    c.feed(m.Waited(), after=0.1)
    c.feed(m.SessionRefused(runtime=dataclasses.replace(held, user_cmd="abort"), held_here=False))
    fail = c.failure()
    assert fail.release is False, "never acquired: nothing to release"
    assert isinstance(fail.error, Unavailable)
    assert fail.error.message == (
        f"Unable to acquire VM {VM}: another client holds its session and did not let go "
        "within 30 s; close other clients"
    )


def test_takeover_timeout_right_after_asking(seen: Seen) -> None:
    c = Connect(seen)
    c.feed(m.SessionRefused(runtime=runtime(l7r_host_id=OTHER), held_here=False), after=31)
    c.feed(m.AbortAsked(holder=OTHER))
    assert "did not let go within 30 s" in c.failure().error.message


# ---- getting the VM running ----------------------------------------------------------------


def test_a_vm_caught_stopping_is_started_again_once_stopped(seen: Seen) -> None:
    c = Connect(seen).acquired()
    stopping = runtime(vm_state="stopping", vm_address=None)
    c.feed(m.RuntimeRead(runtime=stopping))
    assert c.action == m.Wait(until=T0 + 120, on_change=True)
    c.feed(m.Waited(), after=5)
    assert isinstance(c.action, m.ReadRuntime)
    c.feed(m.RuntimeRead(runtime=stopping))
    assert c.action == m.Wait(until=T0 + 120, on_change=True), "the same deadline"
    c.feed(m.Waited(), after=5)
    c.feed(m.RuntimeRead(runtime=STOPPED))
    assert isinstance(c.action, m.RequestStart)
    assert c.texts == [text("acquired"), text("assigning")]


def test_a_running_vm_with_a_stop_pending_is_waited_for_like_a_stopping_one(seen: Seen) -> None:
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=runtime(vm_cmd="stop")))
    assert c.phase is P.AWAITING_STOPPED


def test_a_vm_still_stopping_after_vm_stop_seconds(seen: Seen) -> None:
    c = Connect(seen).acquired()
    stopping = runtime(vm_state="stopping")
    c.feed(m.RuntimeRead(runtime=stopping))
    c.feed(m.Waited(), after=120)
    c.feed(m.RuntimeRead(runtime=stopping))
    fail = c.failure()
    assert fail.release is True
    assert fail.error.message == f"VM {VM} is still stopping after 120 s"


@pytest.mark.parametrize("state", ["zombie", "debugging"])
def test_zombie_and_debugging_vms_are_refused(state: str) -> None:
    c = Connect(set()).acquired()
    c.feed(m.RuntimeRead(runtime=runtime(vm_state=state)))
    assert c.failure().error.message == f"VM {VM} is {state}; an administrator must look at it"


def test_zombie_vm_refused(seen: Seen) -> None:
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=runtime(vm_state="zombie")))
    assert "administrator" in c.failure().error.message


def test_a_start_already_pending_or_underway_is_waited_for(seen: Seen) -> None:
    for row in (runtime(vm_state="stopped", vm_cmd="start", vm_address=None), STARTING):
        c = Connect(seen).acquired()
        c.feed(m.RuntimeRead(runtime=row))
        assert c.phase is P.AWAITING_VM
        assert c.texts == [text("acquired"), text("waiting_vm")]
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=runtime(vm_address=None)))  # running, address not yet known
    assert c.phase is P.AWAITING_VM


def test_no_host_for_the_vm(seen: Seen) -> None:
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=STOPPED))
    c.feed(m.NoHost(reason="no backend host is running"))
    fail = c.failure()
    assert fail.release is True
    assert fail.error.message == f"Unable to assign VM {VM} to a host: no backend host is running"


def test_a_start_refused_under_the_lock_follows_what_the_vm_became(seen: Seen) -> None:
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=STOPPED))
    c.feed(m.StartRefused(decision=StartDecision.PENDING, vm_state="stopped"))
    assert c.phase is P.AWAITING_VM
    assert c.texts[-1] == text("waiting_vm")
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=STOPPED))
    c.feed(m.StartRefused(decision=StartDecision.STOPPING, vm_state="stopping"))
    assert c.phase is P.AWAITING_STOPPED
    c.feed(m.Waited())
    c.feed(m.RuntimeRead(runtime=STOPPED))
    assert c.phase is P.REQUESTING_START
    assert c.texts == [text("acquired"), text("assigning")], "assigning is said once"
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=STOPPED))
    c.feed(m.StartRefused(decision=StartDecision.REFUSED, vm_state="debugging"))
    assert c.failure().error.message == f"VM {VM} is debugging; an administrator must look at it"


def test_a_failed_start_says_the_nodes_reason(seen: Seen) -> None:
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=STOPPED))
    c.feed(m.StartRequested(host_id=HOST))
    c.feed(m.Waited())
    c.feed(m.RuntimeRead(runtime=runtime(vm_state="stopped", vm_cmd="start", vm_address=None)))
    assert c.phase is P.AWAITING_VM, "not claimed yet"
    c.feed(m.Waited())
    c.feed(m.RuntimeRead(runtime=dataclasses.replace(STOPPED, last_error="cannot start: no DI")))
    fail = c.failure()
    assert fail.release is True
    assert fail.error.message == f"Failed to start virtual machine {VM}: cannot start: no DI"


def test_a_start_taken_back_fails_without_a_reason_to_give(seen: Seen) -> None:
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=STARTING))
    c.feed(m.Waited())
    c.feed(m.RuntimeRead(runtime=STOPPED))
    assert c.failure().error.message == f"Failed to start virtual machine {VM}"


def test_a_vm_turning_zombie_while_starting(seen: Seen) -> None:
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=STARTING))
    c.feed(m.Waited())
    c.feed(m.RuntimeRead(runtime=runtime(vm_state="zombie", vm_address=None)))
    assert c.failure().error.message == f"VM {VM} is zombie; an administrator must look at it"


def test_vm_start_timeout(seen: Seen) -> None:
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=STARTING))
    c.feed(m.Waited(), after=269)
    c.feed(m.RuntimeRead(runtime=STARTING))
    assert c.phase is P.AWAITING_VM
    c.feed(m.Waited(), after=1)
    c.feed(m.RuntimeRead(runtime=STARTING))
    assert c.failure().error.message == (
        f"VM {VM} did not reach state 'running' within 270 s (it is starting)"
    )


def test_taken_over_while_waiting_for_the_vm(seen: Seen) -> None:
    for row in (runtime(vm_state="starting", user_cmd="abort"), runtime(l7r_host_id=OTHER)):
        c = Connect(seen).acquired()
        c.feed(m.RuntimeRead(runtime=STARTING))
        c.feed(m.Waited())
        c.feed(m.RuntimeRead(runtime=row))
        fail = c.failure()
        assert isinstance(fail.error, m.Aborted)
        assert fail.error.message == f"the session of VM {VM} was taken over by another client"
        assert fail.release is True


def test_taken_over_before_the_first_look(seen: Seen) -> None:
    c = Connect(seen).acquired()
    c.feed(m.RuntimeRead(runtime=runtime(user_cmd="abort")))
    assert isinstance(c.failure().error, m.Aborted)


# ---- the X session -------------------------------------------------------------------------


def test_x_start_retries_with_backoff_then_succeeds(seen: Seen) -> None:
    c = Connect(seen).starting_x()
    c.feed(m.XStartFailed(reason="session is being suspended, retry", retryable=True))
    assert isinstance(c.action, m.ReadRuntime), "taken over meanwhile? look first"
    c.feed(m.RuntimeRead(runtime=runtime()))
    assert c.action == m.Wait(until=c.now + 0.05, on_change=False)
    c.feed(m.Waited(), after=0.05)
    assert isinstance(c.action, m.StartX)
    assert c.action.attempt == 1
    c.feed(m.XStartFailed(reason="connection refused", retryable=True))
    c.feed(m.RuntimeRead(runtime=runtime()))
    assert c.action == m.Wait(until=c.now + 0.1, on_change=False), "twice as long"
    c.feed(m.Waited(), after=0.1)
    assert isinstance(c.action, m.StartX)
    assert c.action.attempt == 2
    c.feed(m.XStarted(port=4100, cookie="k"))
    assert c.phase is P.AWAITING_X
    assert c.texts.count(text("x_starting")) == 1


def test_x_start_fails_after_its_tries(seen: Seen) -> None:
    c = Connect(seen, x_start_tries=2).starting_x()
    c.feed(m.XStartFailed(reason="no space left", retryable=True))
    c.feed(m.RuntimeRead(runtime=runtime()))
    c.feed(m.Waited())
    c.feed(m.XStartFailed(reason="provisioning failed: no space left", retryable=True))
    fail = c.failure()
    assert fail.release is True
    assert fail.error.message == (
        f"the VM agent of VM {VM} refused to start X: provisioning failed: no space left"
    )


def test_x_start_refused_by_the_vma_is_not_retried(seen: Seen) -> None:
    c = Connect(seen).starting_x()
    c.feed(m.XStartFailed(reason="VMA answered HTTP 401", retryable=False))
    assert "refused to start X: VMA answered HTTP 401" in c.failure().error.message


def test_taken_over_between_x_start_tries(seen: Seen) -> None:
    c = Connect(seen).starting_x()
    c.feed(m.XStartFailed(reason="refused", retryable=True))
    c.feed(m.RuntimeRead(runtime=runtime(user_cmd="abort")))
    assert isinstance(c.failure().error, m.Aborted)


def test_provisioning_gives_x_its_time_again_within_the_vm_start_bound(seen: Seen) -> None:
    c = Connect(seen, x_start=10, vm_start=25).awaiting_x()
    c.feed(m.XObserved(x_state="provisioning"), after=9)  # the home is being made
    assert c.action == m.WaitX(timeout=m.X_WAIT_SLICE)
    c.feed(m.XObserved(x_state="provisioning"), after=9)
    assert c.phase is P.AWAITING_X, "18 s in: provisioning extended the 10 s"
    c.feed(m.XObserved(x_state="starting"), after=6.5)
    assert c.action == m.WaitX(timeout=0.5), "the last slice ends at the vm_start bound"
    c.feed(m.XObserved(x_state="provisioning"), after=0.5)
    assert c.failure().error.message == f"the X session of VM {VM} did not listen within 10 s"


def test_x_start_timeout(seen: Seen) -> None:
    c = Connect(seen).awaiting_x()
    c.feed(m.XObserved(x_state="starting"), after=9.5)
    assert c.action == m.WaitX(timeout=0.5)
    c.feed(m.XObserved(x_state="starting"), after=0.5)
    fail = c.failure()
    assert fail.release is True
    assert fail.error.message == f"the X session of VM {VM} did not listen within 10 s"


@pytest.mark.parametrize("state", ["stopped", "stopping", "connected", "suspended"])
def test_an_x_session_in_another_state_fails(state: str) -> None:
    c = Connect(set()).awaiting_x()
    c.feed(m.XObserved(x_state=state))
    assert c.failure().error.message == f"the X session of VM {VM} is {state}, not listening"


def test_x_session_stopped(seen: Seen) -> None:
    c = Connect(seen).awaiting_x()
    c.feed(m.XObserved(x_state="stopped"))
    assert "is stopped, not listening" in c.failure().error.message


def test_a_vma_that_does_not_answer_x_wait_is_asked_again_after_a_pause(seen: Seen) -> None:
    c = Connect(seen).awaiting_x()
    c.feed(m.XWaitFailed(reason="timed out"), after=1)
    assert c.action == m.Wait(until=c.now + 0.05, on_change=False)
    c.feed(m.Waited(), after=0.05)
    assert isinstance(c.action, m.WaitX)
    c.feed(m.XWaitFailed(reason="timed out"), after=1)
    assert c.action == m.Wait(until=c.now + 0.1, on_change=False)
    c.feed(m.Waited(), after=0.1)
    c.feed(m.XObserved(x_state="listening"))
    assert c.phase is P.DONE


def test_a_vma_silent_until_the_x_deadline(seen: Seen) -> None:
    c = Connect(seen).awaiting_x()
    c.feed(m.XWaitFailed(reason="timed out"), after=10)
    assert c.failure().error.message == (
        f"the X session of VM {VM} did not listen within 10 s (timed out)"
    )
    c = Connect(seen).awaiting_x()
    c.feed(m.XWaitFailed(reason="connection refused"), after=9.99)
    c.feed(m.Waited(), after=0.05)
    assert "did not listen within 10 s" in c.failure().error.message


# ---- the client leaves, the session is taken: in every phase ---------------------------------

ROUTES: dict[m.Phase, Callable[[Connect], object]] = {
    P.ACQUIRING: lambda c: None,
    P.RELEASING_STALE: lambda c: c.feed(m.SessionRefused(runtime=runtime(), held_here=False)),
    P.ASKING_ABORT: lambda c: c.feed(
        m.SessionRefused(runtime=runtime(l7r_host_id=OTHER), held_here=False)
    ),
    P.AWAITING_HOLDER: lambda c: (
        c.feed(m.SessionRefused(runtime=runtime(l7r_host_id=OTHER), held_here=False)),
        c.feed(m.AbortAsked(holder=OTHER)),
    ),
    P.CHECKING_VM: lambda c: c.acquired(),
    P.AWAITING_STOPPED: lambda c: c.acquired().feed(
        m.RuntimeRead(runtime=runtime(vm_state="stopping"))
    ),
    P.REQUESTING_START: lambda c: c.acquired().feed(m.RuntimeRead(runtime=STOPPED)),
    P.AWAITING_VM: lambda c: c.acquired().feed(m.RuntimeRead(runtime=STARTING)),
    P.READING_VM: lambda c: (
        c.acquired().feed(m.RuntimeRead(runtime=STARTING)),
        c.feed(m.Waited()),
    ),
    P.STARTING_X: lambda c: c.starting_x(),
    P.CHECKING_X_RETRY: lambda c: c.starting_x().feed(m.XStartFailed(reason="x", retryable=True)),
    P.X_BACKOFF: lambda c: (
        c.starting_x().feed(m.XStartFailed(reason="x", retryable=True)),
        c.feed(m.RuntimeRead(runtime=runtime())),
    ),
    P.AWAITING_X: lambda c: c.awaiting_x(),
    P.X_PAUSE: lambda c: c.awaiting_x().feed(m.XWaitFailed(reason="x")),
}


def test_the_routes_reach_every_live_phase() -> None:
    assert set(ROUTES) == set(m.Phase) - {P.NEW, P.DONE, P.FAILED}
    for phase, route in ROUTES.items():
        c = Connect(set())
        route(c)
        assert c.phase is phase


def test_the_client_leaving_ends_every_phase(seen: Seen) -> None:
    for phase, route in ROUTES.items():
        c = Connect(seen)
        route(c)
        c.feed(m.ClientGone())
        fail = c.failure()
        assert fail.error.message == "the client went away"
        assert fail.release is c.machine.acquired, phase


def test_an_abort_ends_every_phase_once_the_session_is_ours(seen: Seen) -> None:
    for phase, route in ROUTES.items():
        c = Connect(seen)
        route(c)
        if not c.machine.acquired:
            with pytest.raises(m.UnexpectedEvent):  # nobody can abort what is not ours
                c.machine.handle(m.AbortRequested(), c.now)
            continue
        c.feed(m.AbortRequested())
        fail = c.failure()
        assert isinstance(fail.error, m.Aborted), phase
        assert fail.release is True


def test_abort_while_waiting_for_x(seen: Seen) -> None:
    c = Connect(seen).awaiting_x()
    c.feed(m.XObserved(x_state="starting"))
    c.feed(m.AbortRequested())
    assert isinstance(c.failure().error, m.Aborted)


# ---- the table -----------------------------------------------------------------------------


def test_events_the_table_lacks_are_refused(seen: Seen) -> None:
    c = Connect(seen)
    with pytest.raises(m.UnexpectedEvent):
        c.machine.handle(m.XStarted(port=1, cookie=""), c.now)
    c.feed(m.ClientGone())
    with pytest.raises(m.UnexpectedEvent):  # a failed connect takes nothing more
        c.machine.handle(m.Waited(), c.now)
    assert c.phase is P.FAILED


def test_timeouts_come_from_the_config() -> None:
    config = Config().with_overrides(
        {
            "internal.l7r.timeout.takeover": "5",
            "internal.l7r.timeout.vm_start": "60",
            "internal.l7r.timeout.vm_stop": "50",
            "internal.l7r.timeout.x_start": "3",
            "internal.l7r.retry.x_start": "0",
        },
        source="test",
    )
    assert m.Timeouts.from_config(config) == m.Timeouts(
        takeover=5, vm_start=60, vm_stop=50, x_start=3, x_start_tries=1
    )


def _scenarios() -> list[Callable[[Seen], None]]:
    return [
        fn
        for name, fn in globals().items()
        if name.startswith("test_")
        and callable(fn)
        and list(getattr(fn, "__annotations__", {})) == ["seen", "return"]
    ]


def test_every_transition_of_the_table_is_exercised() -> None:
    made: Seen = set()
    for scenario in _scenarios():
        scenario(made)
    table = {
        (phase, event, target)
        for phase, row in m.TRANSITIONS.items()
        for event, targets in row.items()
        for target in targets
    }
    assert made <= table, f"moves the table lacks: {made - table}"
    assert table - made == set(), f"moves no test makes: {sorted(map(str, table - made))}"
