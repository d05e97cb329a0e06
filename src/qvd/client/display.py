"""What the client's X display is like: its screen size and whether a window manager runs.

Read through libX11 (``ctypes``; the display nxproxy draws into must exist anyway).
The screen size is the default geometry of a session. Whether a window manager runs
decides how nxagent shows it: without one, nxagent always goes fullscreen, and the
nxagent of Debian 12 (3.5.99.26, nx-libs bug #1030) then sizes the desktop at 3/4 of
the screen unless ``fullscreen=1`` was asked for, so the client asks for it there.
A window manager is detected as nxagent does it: selecting SubstructureRedirect on the
root window fails (BadAccess) while another client holds it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

__all__ = ["DisplayInfo", "probe_display"]

_SUBSTRUCTURE_REDIRECT = 1 << 20
_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


@dataclass(frozen=True, slots=True)
class DisplayInfo:
    width: int
    height: int
    window_manager: bool

    @property
    def geometry(self) -> str:
        return f"{self.width}x{self.height}"


_SONAME = "libX11.so.6"


def _xlib() -> ctypes.CDLL | None:
    """libX11, by its soname first: ``ctypes.util.find_library`` runs ``ldconfig -p``
    (a process, ~12 ms before the first request) and is only the fallback."""
    try:
        lib = ctypes.CDLL(_SONAME)
    except OSError:
        from ctypes.util import find_library  # only where the soname is not found

        name = find_library("X11")
        if name is None:
            return None
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    lib.XDefaultScreen.argtypes = [ctypes.c_void_p]
    lib.XDisplayWidth.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XDefaultRootWindow.restype = ctypes.c_ulong
    lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    lib.XSelectInput.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_long]
    lib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XSetErrorHandler.restype = ctypes.c_void_p
    lib.XSetErrorHandler.argtypes = [ctypes.c_void_p]
    return lib


def probe_display(name: str) -> DisplayInfo | None:
    """Size and window manager of X display ``name`` (None if it cannot be opened)."""
    lib = _xlib()
    if lib is None or not name:
        return None
    dpy = lib.XOpenDisplay(name.encode())
    if not dpy:
        return None
    errors: list[int] = []

    def on_error(_display: int | None, _event: int | None) -> int:
        errors.append(1)
        return 0

    handler = _ERROR_HANDLER(on_error)
    previous = lib.XSetErrorHandler(ctypes.cast(handler, ctypes.c_void_p))
    try:
        screen = lib.XDefaultScreen(dpy)
        width, height = lib.XDisplayWidth(dpy, screen), lib.XDisplayHeight(dpy, screen)
        root = lib.XDefaultRootWindow(dpy)
        lib.XSelectInput(dpy, root, _SUBSTRUCTURE_REDIRECT)
        lib.XSync(dpy, 0)
        managed = bool(errors)
        if not managed:  # we held it for a moment: give it back
            lib.XSelectInput(dpy, root, 0)
            lib.XSync(dpy, 0)
    finally:
        lib.XSetErrorHandler(previous)
        lib.XCloseDisplay(dpy)
    return DisplayInfo(int(width), int(height), managed)
