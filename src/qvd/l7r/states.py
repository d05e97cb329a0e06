"""The connect handshake as data: its states, the legal moves and what each says.

A connect goes ``authenticated → acquired → (assigned) → (starting → waiting_vm) →
x_starting → waiting_x → relaying → connected``. Each state entered is announced to the
client as a ``102 Processing`` whose ``X-QVD-VM-Info`` is the state's text (QVD's
wording, which clients show as progress). ``Handshake`` refuses a move the table lacks;
the connect machine (``connect.py``) moves it and hands its texts to the driver.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["TRANSITIONS", "ConnectState", "Handshake", "IllegalMove"]


class ConnectState(Enum):
    AUTHENTICATED = "authenticated"
    ABORTING_OTHER = "aborting_other"
    ACQUIRED = "acquired"
    ASSIGNING = "assigning"
    STARTING_VM = "starting_vm"
    WAITING_VM = "waiting_vm"
    X_STARTING = "x_starting"
    WAITING_X = "waiting_x"
    RELAYING = "relaying"
    CONNECTED = "connected"
    FAILED = "failed"

    def __repr__(self) -> str:
        return self.name


S = ConnectState

TRANSITIONS: dict[ConnectState, frozenset[ConnectState]] = {
    S.AUTHENTICATED: frozenset({S.ABORTING_OTHER, S.ACQUIRED}),
    S.ABORTING_OTHER: frozenset({S.ABORTING_OTHER, S.ACQUIRED}),
    S.ACQUIRED: frozenset({S.ASSIGNING, S.STARTING_VM, S.WAITING_VM, S.X_STARTING}),
    S.ASSIGNING: frozenset({S.STARTING_VM, S.WAITING_VM, S.X_STARTING}),
    S.STARTING_VM: frozenset({S.WAITING_VM}),
    S.WAITING_VM: frozenset({S.X_STARTING}),
    S.X_STARTING: frozenset({S.WAITING_X}),
    S.WAITING_X: frozenset({S.RELAYING}),
    S.RELAYING: frozenset({S.CONNECTED}),
    S.CONNECTED: frozenset(),
    S.FAILED: frozenset(),
}

_TEXT: dict[ConnectState, str] = {
    S.ABORTING_OTHER: "Aborting contending session for VM_ID: {vm_id}",
    S.ACQUIRED: "Session acquired for VM_ID: {vm_id}",
    S.ASSIGNING: "Assigning VM {vm_id} to host",
    S.STARTING_VM: "Starting virtual machine",
    S.WAITING_VM: "Waiting for VM to reach state 'running'",
    S.X_STARTING: "Starting X session at VM {vm_id}",
    S.WAITING_X: "Waiting for X session to come up on VM {vm_id}",
    S.RELAYING: "Connecting X session for VM_ID: {vm_id}",
    S.CONNECTED: "Connection established",
}


class IllegalMove(RuntimeError):
    """A move the transition table does not allow (a bug in the flow)."""


class Handshake:
    """Where one connect stands; ``move`` returns the progress text to send."""

    def __init__(self, vm_id: int) -> None:
        self.vm_id = vm_id
        self.state = S.AUTHENTICATED

    def move(self, to: ConnectState) -> str:
        if to is S.FAILED:
            self.state = to
            return ""
        if to not in TRANSITIONS[self.state]:
            raise IllegalMove(f"{self.state!r} -> {to!r}")
        self.state = to
        return _TEXT[to].format(vm_id=self.vm_id)
