"""Ending the VMA's children (standard library only)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

__all__ = ["end_group"]


def end_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """TERM the process group of ``proc`` (started with ``start_new_session``), then
    KILL it after ``grace`` seconds; always reaped."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()
