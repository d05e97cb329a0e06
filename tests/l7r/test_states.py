"""The handshake table of a connect."""

from __future__ import annotations

import pytest

from qvd.l7r.states import TRANSITIONS, ConnectState, Handshake, IllegalMove


def test_handshake_moves_and_texts() -> None:
    hs = Handshake(7)
    assert hs.move(ConnectState.ACQUIRED) == "Session acquired for VM_ID: 7"
    assert hs.move(ConnectState.ASSIGNING) == "Assigning VM 7 to host"
    with pytest.raises(IllegalMove):
        hs.move(ConnectState.CONNECTED)
    assert all(ConnectState.FAILED not in targets for targets in TRANSITIONS.values())
