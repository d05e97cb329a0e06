"""Typing into a desktop as its user does: key presses on the client's X display
through the XTEST extension (Debian's libXtst, loaded with ctypes; no new package).

The client's nxproxy window forwards them to nxagent, whose focus follows the pointer:
the pointer is first moved over the window that must receive the keys. Used where a
desktop has no other way in (a KVM guest has no ``lxc-attach``)."""

from __future__ import annotations

import ctypes
import time

__all__ = ["type_text"]

# characters that are not their own keysym name
_KEYSYM_NAMES = {
    " ": "space", "\n": "Return", ">": "greater", "<": "less", "/": "slash", ".": "period",
    "-": "minus", "_": "underscore", ";": "semicolon", "~": "asciitilde", "$": "dollar",
    "|": "bar", "&": "ampersand", "=": "equal", ":": "colon", "'": "apostrophe",
    '"': "quotedbl", "*": "asterisk", ",": "comma",
}  # fmt: skip


def _libraries() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    x11 = ctypes.CDLL("libX11.so.6")
    xtst = ctypes.CDLL("libXtst.so.6")
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XStringToKeysym.argtypes = [ctypes.c_char_p]
    x11.XStringToKeysym.restype = ctypes.c_ulong
    x11.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x11.XKeysymToKeycode.restype = ctypes.c_ubyte
    x11.XkbKeycodeToKeysym.argtypes = [ctypes.c_void_p, ctypes.c_ubyte, ctypes.c_int, ctypes.c_int]
    x11.XkbKeycodeToKeysym.restype = ctypes.c_ulong
    xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
    xtst.XTestFakeMotionEvent.argtypes = [
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong,
    ]  # fmt: skip
    return x11, xtst


def type_text(display: str, text: str, *, at: tuple[int, int], pace: float = 0.02) -> None:
    """Move the pointer of ``display`` to ``at`` and type ``text`` there (US keymap:
    letters, digits and the characters of ``_KEYSYM_NAMES``; ``\\n`` is Return)."""
    x11, xtst = _libraries()
    dpy = x11.XOpenDisplay(display.encode())
    if not dpy:
        raise RuntimeError(f"cannot open X display {display}")
    try:
        xtst.XTestFakeMotionEvent(dpy, -1, at[0], at[1], 0)
        x11.XSync(dpy, 0)
        time.sleep(0.2)  # the pointer's crossing reaches the agent before the keys
        shift = x11.XKeysymToKeycode(dpy, x11.XStringToKeysym(b"Shift_L"))
        for char in text:
            keysym = x11.XStringToKeysym(_KEYSYM_NAMES.get(char, char).encode())
            code = x11.XKeysymToKeycode(dpy, keysym) if keysym else 0
            if not code:
                raise ValueError(f"no key types {char!r} on {display}")
            shifted = x11.XkbKeycodeToKeysym(dpy, code, 0, 0) != keysym
            if shifted:
                xtst.XTestFakeKeyEvent(dpy, shift, 1, 0)
            xtst.XTestFakeKeyEvent(dpy, code, 1, 0)
            xtst.XTestFakeKeyEvent(dpy, code, 0, 0)
            if shifted:
                xtst.XTestFakeKeyEvent(dpy, shift, 0, 0)
            x11.XSync(dpy, 0)
            time.sleep(pace)
    finally:
        x11.XCloseDisplay(dpy)
