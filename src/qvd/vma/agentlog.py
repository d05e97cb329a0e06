"""What nxagent's output lines mean (pure; fed line by line by the session runner)."""

from __future__ import annotations

from qvd.vma.nxstate import AgentSignal

__all__ = ["parse_agent_line"]

_PATTERNS: tuple[tuple[str, AgentSignal], ...] = (
    ("Info: Waiting for connection from", AgentSignal.LISTENING),
    ("Session: Session started at", AgentSignal.STARTED),
    ("Session: Session resumed at", AgentSignal.STARTED),
    ("Session: Suspending session at", AgentSignal.SUSPENDING),
    ("Session: Session suspended at", AgentSignal.SUSPENDED),
    ("Session: Terminating session at", AgentSignal.TERMINATING),
    ("Session: Aborting session at", AgentSignal.TERMINATING),
    ("Session: Session terminated at", AgentSignal.TERMINATING),
    ("Session: Session aborted at", AgentSignal.TERMINATING),
)


def parse_agent_line(line: str) -> AgentSignal | None:
    """The signal a line of nxagent output carries, or None for the other lines."""
    text = line.strip()
    for prefix, signal in _PATTERNS:
        if text.startswith(prefix):
            return signal
    return None
