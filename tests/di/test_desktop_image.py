"""The ``desktop`` image shows a desktop on the client (slow: the first run on a machine
builds the image, a few minutes; later runs take it from the cache, as ``qvd up`` does).
The screenshot is left in the test output directory as ``desktop.png``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qvd.di import ensure_image
from qvd.di.screenshot import Screenshot, take_screenshot
from qvd.di.testbed import NxProxy, Xvfb
from tests.vma.helpers import StartContainer, wait_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def looks_like_a_desktop(shot: Screenshot) -> bool:
    """Xfce draws a coloured wallpaper and a panel: many colours, little pure black."""
    return shot.distinct_colours() > 200 and shot.fraction(0, 8) < 0.5


def test_desktop_image_shows_a_desktop(
    start_container: StartContainer,
    scratch: Path,
    xvfb: Xvfb,
    proxies: Callable[..., NxProxy],
    evidence_dir: Path,
) -> None:
    image = ensure_image("desktop", progress=lambda p: print(p.render(), flush=True))
    container, client = start_container(image)
    cookie = str(client.x_start({"qvd.vm.user.name": "dora", "qvd.client.link": "lan"})["cookie"])
    assert wait_state(client, "listening") == "listening"
    proxy = proxies(
        display=xvfb.display, host=container.address, port=4100, cookie=cookie, nx_display=100
    )
    assert proxy.wait_log("Session started", timeout=15), proxy.log()
    end = time.monotonic() + 60
    shot = take_screenshot(xvfb.display)
    while not looks_like_a_desktop(shot) and time.monotonic() < end:
        time.sleep(0.5)
        shot = take_screenshot(xvfb.display)
    time.sleep(3)  # let the panel finish drawing for the picture
    shot = take_screenshot(xvfb.display)
    shot.save_png(evidence_dir / "desktop.png")
    assert looks_like_a_desktop(shot), f"{shot.distinct_colours()} colours"
    processes = container.attach("ps", "-u", "dora", "-o", "comm=").stdout.split()
    assert "xfwm4" in processes
    assert "xfce4-panel" in processes
