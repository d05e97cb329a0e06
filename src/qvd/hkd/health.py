"""Talking to a VM's agent (VMA) from the HKD: liveness, poweroff, expire.

:class:`VmaProbe` is the seam: the reconcile loop depends on it, the real one speaks
HTTP through ``qvd.vma.client`` after checking that the VM's address is routed through
this node's bridge (the network rule), and tests of the loop give it a fake.
"""

from __future__ import annotations

import enum
import subprocess
from typing import Protocol

from qvd.vma.client import VmaClient, VmaError, VmaUnavailable

__all__ = ["HttpVmaProbe", "Liveness", "RouteError", "VmaProbe", "check_route"]


class Liveness(enum.Enum):
    """What a ping found: an answer; nobody there (refused, reset, unreachable, a
    wrong answer: the agent is dead); or silence (a timeout: the VM may only be slow,
    e.g. starved of CPU, and deserves a longer patience)."""

    ANSWERED = "answered"
    DEAD = "dead"
    SILENT = "silent"


class RouteError(Exception):
    """An address is not reached through the interface it must be reached through."""


class VmaProbe(Protocol):
    def ping(self, address: str, port: int, secret: str) -> Liveness: ...

    def poweroff(self, address: str, port: int, secret: str) -> bool: ...

    def expire(self, address: str, port: int, secret: str, *, soft: str, hard: str) -> bool: ...


def check_route(address: str, device: str) -> None:
    """Raise unless the kernel routes ``address`` through ``device`` (``ip route get``)."""
    done = subprocess.run(
        ["ip", "-o", "route", "get", address], capture_output=True, text=True, check=False
    )
    words = done.stdout.split()
    if done.returncode != 0 or "dev" not in words or words[words.index("dev") + 1] != device:
        reason = done.stdout.strip() or done.stderr.strip() or "no route"
        raise RouteError(f"{address} is not routed through {device}: {reason}")


class HttpVmaProbe:
    """The real probe: one HTTP call per question, short timeouts."""

    def __init__(self, device: str, timeout: float) -> None:
        self._device = device
        self._timeout = timeout
        self._routed: set[str] = set()

    def _client(self, address: str, port: int, secret: str) -> VmaClient:
        if address not in self._routed:
            check_route(address, self._device)
            self._routed.add(address)
        return VmaClient(address, port=port, secret=secret.encode(), timeout=self._timeout)

    def ping(self, address: str, port: int, secret: str) -> Liveness:
        try:
            self._client(address, port, secret).ping()
        except VmaUnavailable as exc:
            return Liveness.DEAD if exc.refused else Liveness.SILENT
        except (VmaError, RouteError):
            return Liveness.DEAD
        return Liveness.ANSWERED

    def poweroff(self, address: str, port: int, secret: str) -> bool:
        try:
            self._client(address, port, secret).poweroff()
        except (VmaError, RouteError):
            return False
        return True

    def expire(self, address: str, port: int, secret: str, *, soft: str, hard: str) -> bool:
        try:
            self._client(address, port, secret).expire(soft=soft, hard=hard)
        except (VmaError, RouteError):
            return False
        return True
