"""Helpers shared by the VMA tests and the end-to-end ones (waiting on the VMA, on an
xterm drawn on a client display; a device context for the printing device)."""

from __future__ import annotations

import pwd
import time
from collections.abc import Callable
from pathlib import Path

from qvd.di.screenshot import Screenshot, take_screenshot
from qvd.hkd.backends.lxc.testbed import Container
from qvd.vma.channels import ChannelPlan
from qvd.vma.client import VmaClient, VmaError
from qvd.vma.config import DEFAULTS
from qvd.vma.devices import DeviceContext

__all__ = [
    "StartContainer",
    "printing_context",
    "wait_for_xterm",
    "wait_ping",
    "wait_state",
    "xterm_visible",
]

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


def printing_context(
    cups_server: str, display: int, tmp: Path, *, printing: bool = True
) -> DeviceContext:
    """A session's ``DeviceContext`` for ``qvd.vma.printing`` run here as root: the
    desktop's CUPS at ``cups_server`` (a unix socket), the NX printing port that of
    ``display`` (2000 + display), the VMA's defaults otherwise."""
    settings = {**DEFAULTS, "vma.printing.cups.server": cups_server}
    return DeviceContext(
        user=pwd.getpwuid(0), display=display, plan=ChannelPlan(printing=printing), params={},
        setting=lambda key: settings.get(key, ""), run_dir=tmp, log_dir=tmp, env={},
    )  # fmt: skip
