"""Helpers shared by the VMA tests and the end-to-end ones (waiting on the VMA, on an
xterm drawn on a client display)."""

from __future__ import annotations

import time
from collections.abc import Callable

from qvd.di.screenshot import Screenshot, take_screenshot
from qvd.hkd.backends.lxc.testbed import Container
from qvd.vma.client import VmaClient, VmaError

__all__ = ["StartContainer", "wait_for_xterm", "wait_ping", "wait_state", "xterm_visible"]

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


def xterm_visible(shot: Screenshot) -> bool:
    """A white xterm (``-bg white``) with dark text in it, on the agent's black root."""
    box = shot.bright_box()
    if box is None:
        return False
    x0, y0, x1, y1 = box
    big_enough = (x1 - x0) > 300 and (y1 - y0) > 200
    return big_enough and shot.count_in_box(box) > 50


def wait_for_xterm(display: str, timeout: float = 15.0) -> Screenshot:
    """Screenshots of ``display`` until one shows the xterm or ``timeout`` passes."""
    end = time.monotonic() + timeout
    shot = take_screenshot(display)
    while not xterm_visible(shot) and time.monotonic() < end:
        time.sleep(0.1)
        shot = take_screenshot(display)
    return shot
