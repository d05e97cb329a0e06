"""nxagent output lines (as logged by nxagent 3.5.99.26 in the test image)."""

from __future__ import annotations

import pytest

from qvd.vma.agentlog import parse_agent_line
from qvd.vma.nxstate import AgentSignal


@pytest.mark.parametrize(
    ("line", "signal"),
    [
        ("Info: Waiting for connection from '10.0.0.1' on socket 'tcp:*:4100'.", "listening"),
        ("Info: Waiting for connection from any host on socket 'tcp:*:4100'.", "listening"),
        ("Session: Session started at 'Wed Nov 25 21:16:19 2026'.", "started"),
        ("Session: Session resumed at 'Wed Nov 25 21:16:19 2026'.", "started"),
        ("Session: Suspending session at 'Wed Nov 25 21:18:06 2026'.", "suspending"),
        ("Session: Session suspended at 'Wed Nov 25 21:18:07 2026'.", "suspended"),
        ("Session: Terminating session at 'Wed Nov 25 21:22:50 2026'.", "terminating"),
        ("Session: Aborting session at 'Wed Nov 25 21:22:50 2026'.", "terminating"),
        ("Session: Session aborted at 'Wed Nov 25 21:22:50 2026'.\n", "terminating"),
    ],
)
def test_lines_that_change_the_state(line: str, signal: str) -> None:
    assert parse_agent_line(line) is AgentSignal(signal)


@pytest.mark.parametrize(
    "line",
    [
        "Session: Starting session at 'Wed Nov 25 21:16:18 2026'.",
        "Session: Resuming session at 'Wed Nov 25 21:18:07 2026'.",
        "Session: Display failure detected at 'Wed Nov 25 21:18:06 2026'.",
        "Warning: Refusing connection from '10.0.0.200'.",
        "Info: Agent running with pid '35'.",
        "",
    ],
)
def test_other_lines_mean_nothing(line: str) -> None:
    assert parse_agent_line(line) is None
