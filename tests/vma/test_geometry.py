"""The session gets the geometry the client asks for, at start and on every resume.

The container tests run the ``test`` image with a real nxagent and a real nxproxy
drawing into an Xvfb of 1280x800; the size checked is that of the agent's window on
the client display, which is what the user sees.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest

from qvd.di.testbed import NxProxy, Xvfb
from qvd.hkd.backends.lxc.testbed import Container
from qvd.vma.client import VmaClient
from qvd.vma.geometry import Geometry, connected_output, requested_geometry, resize_commands
from tests.vma.helpers import StartContainer, wait_state
from tests.vma.miniwm import MiniWm, window_size

USER = {"qvd.vm.user.name": "gina", "qvd.client.link": "lan", "qvd.client.os": "linux"}


def test_requested_geometry_is_validated() -> None:
    assert requested_geometry({"qvd.client.geometry": "1024x768"}) == Geometry(1024, 768)
    assert requested_geometry({"qvd.client.geometry": " 800x600 "}) == Geometry(800, 600)
    for bad in ("", "1024", "1024x", "x768", "10x10", "99999x768", "1024x768+0+0", "-1x5"):
        assert requested_geometry({"qvd.client.geometry": bad}) is None, bad
    assert requested_geometry({}) is None


def test_connected_output_and_resize_commands() -> None:
    query = (
        "Screen 0: minimum 320 x 240, current 960 x 600, maximum 1920 x 1200\n"
        "NX1 connected 960x600+0+0 0mm x 0mm\n   nx_960x600    60.00*\n"
    )
    assert connected_output(query) == "NX1"
    assert connected_output("Screen 0: minimum 320 x 240\n") is None
    runs = resize_commands("/usr/bin/xrandr", "NX1", Geometry(800, 600))
    assert runs[0][:3] == ["/usr/bin/xrandr", "--newmode", "qvd_800x600"]
    assert runs[0][4:] == ["800"] * 4 + ["600"] * 4
    assert runs[1:] == [
        ["/usr/bin/xrandr", "--addmode", "NX1", "qvd_800x600"],
        ["/usr/bin/xrandr", "--output", "NX1", "--mode", "qvd_800x600"],
        ["/usr/bin/xrandr", "--fb", "800x600"],
    ]


@pytest.fixture
def big_xvfb() -> Iterator[Xvfb]:
    display = Xvfb("1280x800x24")
    yield display
    display.close()


def wait_window(display: str, wanted: tuple[int, int], timeout: float = 20.0) -> tuple[int, int]:
    """The agent window's size once it is ``wanted`` (or the last one seen)."""
    end = time.monotonic() + timeout
    size = window_size(display)
    while size != wanted and time.monotonic() < end:
        time.sleep(0.1)
        size = window_size(display)
    assert size is not None, "no agent window on the client display"
    return size


def connect(
    client: VmaClient, container: Container, display: str, proxies: Callable[..., NxProxy],
    params: dict[str, str],
) -> tuple[str, NxProxy]:  # fmt: skip
    """``x_start`` with ``params``, then an nxproxy on ``display`` until the session is
    connected; the session's cookie and the proxy."""
    cookie = str(client.x_start(params)["cookie"])
    assert wait_state(client, "listening") == "listening"
    proxy = proxies(
        display=display, host=container.address, port=4100, cookie=cookie, nx_display=100
    )
    assert wait_state(client, "connected") == "connected", proxy.log()
    return cookie, proxy


@pytest.mark.timeout(600)
def test_geometry_at_start_and_after_a_resume_with_another(
    start_container: StartContainer, big_xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    wm = MiniWm(big_xvfb.display)
    try:
        container, client = start_container()
        first = {**USER, "qvd.client.geometry": "1000x700", "qvd.client.fullscreen": "0"}
        cookie, proxy = connect(client, container, big_xvfb.display, proxies, first)
        assert wait_window(big_xvfb.display, (1000, 700)) == (1000, 700)

        # the client goes; another one comes back asking for a smaller screen
        proxy.close()
        assert wait_state(client, "suspended") == "suspended"
        second = {**USER, "qvd.client.geometry": "800x600", "qvd.client.fullscreen": "0"}
        resumed, again = connect(client, container, big_xvfb.display, proxies, second)
        assert resumed == cookie
        assert wait_window(big_xvfb.display, (800, 600)) == (800, 600), container.log_text(
            "/var/log/qvd/vma.log"
        )[-3000:]
        # and the X screen inside the session has that size too
        inside = container.attach(
            "env", "DISPLAY=:100", "XAUTHORITY=/home/gina/.Xauthority", "xrandr", "-q"
        ).stdout  # fmt: skip
        assert re.search(r"^\S+ connected 800x600\+0\+0", inside, re.MULTILINE), inside

        # nxagent ignores fullscreen on resume: the window gets the screen's size
        again.close()
        assert wait_state(client, "suspended") == "suspended"
        full = {**USER, "qvd.client.geometry": "1280x800", "qvd.client.fullscreen": "1"}
        resumed, _ = connect(client, container, big_xvfb.display, proxies, full)
        assert resumed == cookie
        assert wait_window(big_xvfb.display, (1280, 800)) == (1280, 800)
    finally:
        wm.close()


@pytest.mark.timeout(600)
def test_fullscreen_without_a_window_manager_fills_the_client_screen(
    start_container: StartContainer, big_xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    container, client = start_container()
    params = {**USER, "qvd.client.geometry": "1280x800", "qvd.client.fullscreen": "1"}
    connect(client, container, big_xvfb.display, proxies, params)
    assert wait_window(big_xvfb.display, (1280, 800)) == (1280, 800)
