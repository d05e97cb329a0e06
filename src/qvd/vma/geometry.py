"""The session's screen size: what the client asked for and how to apply it (pure).

nxagent reads ``geometry=WxH`` from its options file only the first time: it keeps the
first value it parsed for the life of the agent, so a resume with another geometry
comes back at the old size. nxagent also forces fullscreen when the client display has
no window manager, and in that case (nx-libs 3.5.99.26, bug #1030) sizes the desktop at
3/4 of the client screen unless ``fullscreen=1`` was asked for; the client sends
``fullscreen=1`` there (see ``qvd.client.display``).

On every connect the VMA therefore compares the requested geometry with the one the
agent has, and when they differ resizes the running agent through RandR inside the
session (a mode of exactly ``WxH`` on the agent's output, then the framebuffer), which
nxagent follows by resizing its window on the client. ``fullscreen=`` is ignored on
resume as well: a windowed session resumed with fullscreen asked is sized to the
geometry sent with it (the client sends its screen's size), not made borderless.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_SIDE",
    "MIN_SIDE",
    "Geometry",
    "connected_output",
    "requested_geometry",
    "resize_commands",
    "wants_fullscreen",
]

MIN_SIDE = 64
MAX_SIDE = 16384
_GEOMETRY = re.compile(r"^\s*(\d{1,5})x(\d{1,5})\s*$")
_CONNECTED = re.compile(r"^(\S+) connected\b", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Geometry:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def requested_geometry(params: Mapping[str, str]) -> Geometry | None:
    """``qvd.client.geometry`` as a size, or None when absent or not a sane ``WxH``."""
    match = _GEOMETRY.match(params.get("qvd.client.geometry", ""))
    if match is None:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        return None
    return Geometry(width, height)


def wants_fullscreen(params: Mapping[str, str]) -> bool:
    return params.get("qvd.client.fullscreen", "").strip().lower() in ("1", "true", "yes")


def connected_output(xrandr_query: str) -> str | None:
    """The first connected output named in ``xrandr -q`` output (``NX1``, ``default``)."""
    match = _CONNECTED.search(xrandr_query)
    return match.group(1) if match else None


def resize_commands(xrandr: str, output: str, size: Geometry) -> list[list[str]]:
    """The xrandr runs that give the agent's screen exactly ``size``.

    A mode of that size (its timings do not matter to nxagent) is created and added to
    the output (both fail harmlessly when they exist already), selected, and the
    framebuffer set to it.
    """
    name = f"qvd_{size}"
    w, h = str(size.width), str(size.height)
    return [
        [xrandr, "--newmode", name, "60", w, w, w, w, h, h, h, h],
        [xrandr, "--addmode", output, name],
        [xrandr, "--output", output, "--mode", name],
        [xrandr, "--fb", str(size)],
    ]
