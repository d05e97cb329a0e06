"""Helpers shared by the VMA tests (waiting on the VMA)."""

from __future__ import annotations

import time
from collections.abc import Callable

from qvd.di.testbed import Container
from qvd.vma.client import VmaClient, VmaError

__all__ = ["StartContainer", "wait_ping", "wait_state"]

StartContainer = Callable[..., tuple[Container, VmaClient]]


def wait_ping(client: VmaClient, timeout: float = 15.0) -> float:
    """Poll ping until it answers; returns the seconds it took."""
    start = time.monotonic()
    saved, client.timeout = client.timeout, 0.25
    try:
        while True:
            try:
                client.ping()
                return time.monotonic() - start
            except VmaError:
                if time.monotonic() - start > timeout:
                    raise
                time.sleep(0.01)
    finally:
        client.timeout = saved


def wait_state(client: VmaClient, wanted: str, timeout: float = 15.0) -> str:
    end = time.monotonic() + timeout
    state = client.x_state()
    while state != wanted and time.monotonic() < end:
        time.sleep(0.02)
        state = client.x_state()
    return state
