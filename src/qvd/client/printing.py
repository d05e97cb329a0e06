"""Printing: the desktop's queues print to this machine's CUPS through the NX printing
channel (nxproxy ``cups=<port>``; the desktop adds one queue per printer it finds here).

On by ``client.printing.enable`` (default 1, as the original client); the local CUPS is
at ``client.printing.port`` (default 631). The client sends
``qvd.client.printing.enabled=1``, the original's parameter: the desktop opens the
channel only when it is set and its own ``vma.printing.enable`` allows it.
"""

from __future__ import annotations

from qvd.client import settings
from qvd.client.devices import ClientSession

__all__ = ["DEFAULT_CUPS_PORT", "Printing", "enabled"]

DEFAULT_CUPS_PORT = 631


def enabled(conf: settings.ClientSettings) -> bool:
    return conf.flag("client.printing.enable") is not False


class Printing:
    """The client's end of printing: a parameter and an nxproxy option."""

    name = "printing"

    def __init__(self, conf: settings.ClientSettings) -> None:
        port = conf.get("client.printing.port") or ""
        self.port = int(port) if port else DEFAULT_CUPS_PORT

    def params(self) -> dict[str, str]:
        return {"qvd.client.printing.enabled": "1"}

    def open(self, session: ClientSession) -> list[str]:
        return [f"cups={self.port}"]

    def attached(self, session: ClientSession) -> None:
        return None

    def close(self) -> None:
        return None
