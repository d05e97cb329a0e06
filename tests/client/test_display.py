"""What the client asks for from its display (a real Xvfb, with and without a window
manager): the geometry defaults to the screen's; without a window manager the desktop
is asked fullscreen (nxagent would force fullscreen there, at 3/4 of the screen)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qvd.client import settings
from qvd.client.display import DisplayInfo, probe_display
from qvd.client.main import parse_args, resolve, session_params
from qvd.di.testbed import Xvfb
from tests.vma.miniwm import MiniWm


@pytest.fixture
def screen() -> Iterator[Xvfb]:
    display = Xvfb("1280x800x24")
    yield display
    display.close()


def params(display: str, *argv: str) -> dict[str, str]:
    opts = resolve(parse_args(["--host", "h", "--user", "u", *argv]), settings.ClientSettings({}))
    return session_params(opts, display)


def test_probe_sees_the_size_and_the_window_manager(screen: Xvfb) -> None:
    assert probe_display(screen.display) == DisplayInfo(1280, 800, window_manager=False)
    wm = MiniWm(screen.display)
    try:
        assert probe_display(screen.display) == DisplayInfo(1280, 800, window_manager=True)
    finally:
        wm.close()
    assert probe_display(screen.display) == DisplayInfo(1280, 800, window_manager=False)
    assert probe_display(":1999") is None


def test_geometry_defaults_to_the_screen_and_follows_the_request(screen: Xvfb) -> None:
    wm = MiniWm(screen.display)
    try:
        got = params(screen.display)
        assert got["qvd.client.geometry"] == "1280x800"
        assert got["qvd.client.fullscreen"] == "0"
        got = params(screen.display, "--geometry", "1000x700")
        assert (got["qvd.client.geometry"], got["qvd.client.fullscreen"]) == ("1000x700", "0")
        got = params(screen.display, "--fullscreen", "--geometry", "1000x700")
        assert (got["qvd.client.geometry"], got["qvd.client.fullscreen"]) == ("1280x800", "1")
    finally:
        wm.close()


def test_without_a_window_manager_the_desktop_fills_the_screen(screen: Xvfb) -> None:
    got = params(screen.display, "--geometry", "1000x700")
    assert (got["qvd.client.geometry"], got["qvd.client.fullscreen"]) == ("1280x800", "1")
