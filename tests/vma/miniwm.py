"""The smallest X window manager (libX11 through ctypes), for client displays in tests.

It holds SubstructureRedirect on the root window (so X clients, nxagent included, see
a window manager), maps windows when asked and applies their configure requests as
they are. Run it with ``python -m tests.vma.miniwm :N``; ``MiniWm`` starts and ends
one and waits until it holds the root window.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import time

__all__ = ["MiniWm"]

_MAP_REQUEST = 20
_CONFIGURE_REQUEST = 23


class _WindowChanges(ctypes.Structure):
    _fields_ = [
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("border_width", ctypes.c_int),
        ("sibling", ctypes.c_ulong),
        ("stack_mode", ctypes.c_int),
    ]


class _MapRequest(ctypes.Structure):
    """XMapRequestEvent; its fields also begin XConfigureRequestEvent."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("parent", ctypes.c_ulong),
        ("window", ctypes.c_ulong),
    ]


class _ConfigureRequest(_MapRequest):
    """XConfigureRequestEvent: the fields of ``_MapRequest``, then these."""

    _fields_ = [
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("border_width", ctypes.c_int),
        ("above", ctypes.c_ulong),
        ("detail", ctypes.c_int),
        ("value_mask", ctypes.c_ulong),
    ]


def run(display: str) -> None:
    name = ctypes.util.find_library("X11")
    assert name is not None, "libX11 is missing"
    x = ctypes.CDLL(name)
    x.XOpenDisplay.restype = ctypes.c_void_p
    x.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x.XDefaultRootWindow.restype = ctypes.c_ulong
    x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x.XSelectInput.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_long]
    x.XNextEvent.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    x.XMapWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x.XConfigureWindow.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_uint,
        ctypes.POINTER(_WindowChanges),
    ]
    dpy = x.XOpenDisplay(display.encode())
    if not dpy:
        sys.exit(f"cannot open {display}")
    x.XSelectInput(dpy, x.XDefaultRootWindow(dpy), (1 << 20) | (1 << 19))
    x.XSync(dpy, 0)
    print("ready", flush=True)
    event = ctypes.create_string_buffer(192)
    while True:
        x.XNextEvent(dpy, event)
        kind = ctypes.c_int.from_buffer(event).value
        if kind == _MAP_REQUEST:
            x.XMapWindow(dpy, _MapRequest.from_buffer(event).window)
        elif kind == _CONFIGURE_REQUEST:
            req = _ConfigureRequest.from_buffer(event)
            changes = _WindowChanges(
                req.x, req.y, req.width, req.height, req.border_width, req.above, req.detail
            )
            x.XConfigureWindow(dpy, req.window, req.value_mask & 0x7F, ctypes.byref(changes))


class MiniWm:
    """A running ``miniwm`` on ``display``; ``close`` ends it."""

    def __init__(self, display: str) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *sys.path])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.vma.miniwm", display],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"miniwm did not start on {display}: {line!r}")

    def close(self) -> None:
        # imported here: the window manager process itself needs none of the suite
        from tests.conftest import end_process

        end_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def window_size(display: str, name: str = "QVD", timeout: float = 0.0) -> tuple[int, int] | None:
    """The size of the top-level NXAgent window called ``name`` on ``display``."""
    end = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            ["xwininfo", "-root", "-tree"],
            env={**os.environ, "DISPLAY": display},
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in out.splitlines():
            if f'"{name}": ("NXAgent"' in line:
                size = line.split(")", 1)[1].split()[0]
                w, _, h = size.partition("x")
                return int(w), int(h.split("+")[0])
        if time.monotonic() >= end:
            return None
        time.sleep(0.1)


if __name__ == "__main__":
    run(sys.argv[1])
