"""``vnc_connect``: what a request must hold, and the command lines it runs (pure).

``GET /vma/vnc_connect?view_only=0|1&attach=0|1`` with the VMA secret, ``Connection:
Upgrade``, ``Upgrade: VNC``, ``X-QVD-VNC-Password`` (a one-time password: 8 printable
ASCII characters, no space) and optionally ``X-QVD-Spy-Notice`` (at most 200 printable
characters, shown to the user by ``xmessage`` reading it on stdin). After ``101
Switching Protocols`` the connection is the stdin/stdout of ``x11vnc -inetd`` on the
session's display, run as the session's user; x11vnc asks for VNC authentication
with the one-time password (read from a 0600 file it deletes) and serves one
client (``-once``). Nothing listens on a VNC port.

``attach=0`` (an administrator's spy) needs the X session ``connected`` or
``suspended``; ``attach=1`` (the user's own browser session) needs ``listening`` or
``suspended`` and attaches the in-VM viewer (``nxproxy`` drawing into a private
``Xvfb``: to nxagent it is just an NX client) so that the session is live, and
suspends the session again when the RFB stream ends.

This module parses and builds; ``qvd.vma.session`` runs the processes and
``qvd.vma.server`` does the upgrade.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "MAX_NOTICE",
    "PASSWORD_LENGTH",
    "VncRefused",
    "VncRequest",
    "VncService",
    "check_state",
    "nxproxy_argv",
    "parse_vnc_request",
    "x11vnc_argv",
    "xmessage_argv",
    "xvfb_argv",
]

PASSWORD_LENGTH = 8
MAX_NOTICE = 200
SPY_STATES = frozenset({"connected", "suspended"})
ATTACH_STATES = frozenset({"listening", "suspended"})


class VncRefused(Exception):
    """The request cannot be served: ``status`` (HTTP) and the reason (``str``)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class VncRequest:
    view_only: bool
    attach: bool
    password: str
    notice: str

    def __repr__(self) -> str:  # the password never reaches a log through a repr
        return f"VncRequest(view_only={self.view_only}, attach={self.attach})"


class VncService(Protocol):
    """What the server hands an accepted ``vnc_connect`` to (``session.VncSessions``)."""

    def serve(
        self, request: VncRequest, connection: socket.socket, accepted: Callable[[], None]
    ) -> None: ...


def _flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "0")
    if value not in ("0", "1"):
        raise VncRefused(400, f"{name} must be 0 or 1")
    return value == "1"


def _tokens(header: str) -> set[str]:
    return {word.strip().lower() for word in header.split(",") if word.strip()}


def parse_vnc_request(params: Mapping[str, str], headers: Mapping[str, str]) -> VncRequest:
    """The request, or ``VncRefused`` (426 without the upgrade, 400 for bad values).

    ``headers`` maps lower-case header names to values.
    """
    if "upgrade" not in _tokens(headers.get("connection", "")):
        raise VncRefused(426, "vnc_connect needs Connection: Upgrade and Upgrade: VNC")
    if headers.get("upgrade", "").strip().lower() != "vnc":
        raise VncRefused(426, "vnc_connect needs Upgrade: VNC")
    password = headers.get("x-qvd-vnc-password", "")
    if len(password) != PASSWORD_LENGTH or not all(0x21 <= ord(c) <= 0x7E for c in password):
        raise VncRefused(
            400, f"X-QVD-VNC-Password must be {PASSWORD_LENGTH} printable ASCII characters"
        )
    notice = headers.get("x-qvd-spy-notice", "")
    if len(notice) > MAX_NOTICE or not notice.isprintable():
        raise VncRefused(400, f"X-QVD-Spy-Notice must be at most {MAX_NOTICE} printable characters")
    return VncRequest(
        view_only=_flag(params, "view_only"),
        attach=_flag(params, "attach"),
        password=password,
        notice=notice.strip(),
    )


def check_state(request: VncRequest, x_state: str) -> None:
    """Refuse (409, reason) a request the X session's state does not allow."""
    if request.attach and x_state not in ATTACH_STATES:
        raise VncRefused(
            409,
            f"the session is {x_state}: a browser attaches to a listening or suspended "
            "session (call x_start first)",
        )
    if not request.attach and x_state not in SPY_STATES:
        raise VncRefused(
            409, f"the session is {x_state}: only a connected or suspended session can be viewed"
        )


def x11vnc_argv(
    command: str,
    *,
    display: int,
    xauthority: str,
    password_file: str,
    view_only: bool,
    extra: list[str],
) -> list[str]:
    """x11vnc serving one client on stdin/stdout with VNC auth (never a TCP port)."""
    argv = [
        command,
        "-inetd",
        "-display",
        f":{display}",
        "-auth",
        xauthority,
        "-passwdfile",
        f"rm:{password_file}",
        "-once",
        "-shared",
        "-nopw",  # no warning banner about a missing password: there is one
        "-norc",
        "-noxdamage",  # pure polling: always right on nxagent's display
        "-nonap",  # no idle naps: the first frame comes at once, not after ~1 s
        "-quiet",
    ]
    if view_only:
        argv.append("-viewonly")
    return argv + extra


def xvfb_argv(command: str, *, display: int, geometry: str) -> list[str]:
    """The viewer's private X server: no TCP, no other client than nxproxy."""
    return [command, f":{display}", "-screen", "0", f"{geometry}x24", "-nolisten", "tcp"]


def nxproxy_argv(command: str, *, port: int, cookie: str, display: int) -> list[str]:
    """The in-VM NX client that attaches the session (from loopback only, so over a
    ``lan`` link: no emulation of a slow line)."""
    options = f"nx/nx,link=lan,connect=127.0.0.1,port={port},cookie={cookie}:{display}"
    return [command, "-S", options]


def clipboard_sync_argvs(command: str) -> list[list[str]]:
    """autocutsel keeping CLIPBOARD and PRIMARY in step with the cut buffer, one process
    each: x11vnc 0.9.16 puts a viewer's clipboard text only into ``CUT_BUFFER0``, which
    xterm pastes but toolkit applications never read; with these, text copied in the
    browser pastes everywhere in the desktop (x11vnc itself sends the desktop's
    selections back to the viewer)."""
    return [[command, "-selection", "CLIPBOARD"], [command, "-selection", "PRIMARY"]]


def xmessage_argv(command: str) -> list[str]:
    """xmessage showing the notice it reads on stdin (``-file -``): the text is never
    an argument (Xt parses toolkit options such as ``-display`` anywhere in argv,
    ``--`` does not stop it) and never passes through a shell."""
    return [command, "-center", "-timeout", "30", "-file", "-"]
