"""systemd's readiness protocol (``sd_notify``) in a few lines of the standard library.

A unit of ``Type=notify`` is "started" only when its main process sends ``READY=1`` to
the datagram socket named by ``$NOTIFY_SOCKET``; ``STOPPING=1`` says it is shutting
down, ``WATCHDOG=1`` keeps a ``WatchdogSec=`` unit alive and ``STATUS=…`` is what
``systemctl status`` shows. The socket is a path, or an abstract name written with a
leading ``@`` (sent as a leading NUL byte). Without ``$NOTIFY_SOCKET`` (not under
systemd) every call does nothing: the daemons call it unconditionally.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = [
    "NOTIFY_SOCKET_ENV",
    "Notifier",
    "notifier_from_env",
    "socket_address",
    "watchdog_interval",
]

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def socket_address(name: str) -> str | bytes | None:
    """The AF_UNIX address of ``$NOTIFY_SOCKET``'s value: a path (absolute), an abstract
    name (``@name`` → ``b"\\0name"``), or None for anything else (ignored, as systemd's
    own sd_notify does)."""
    if name.startswith("@") and len(name) > 1:
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1`` (half of ``WatchdogSec=``), or None when no
    watchdog is asked of this process (``$WATCHDOG_PID`` names another one)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Sends state lines to one notify socket (or nowhere)."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``KEY=value`` lines) as one datagram; True if sent. Errors
        are swallowed: readiness is a courtesy to systemd, never a reason to fail."""
        if self.address is None:
            return False
        for field in fields:
            if "\n" in field or "=" not in field:
                raise ValueError(f"not a KEY=value notify field: {field!r}")
        payload = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")


def notifier_from_env(environ: Mapping[str, str] | None = None) -> Notifier:
    """The notifier of ``$NOTIFY_SOCKET`` (a no-op one when it is unset)."""
    env = os.environ if environ is None else environ
    return Notifier(socket_address(env.get(NOTIFY_SOCKET_ENV, "")))
