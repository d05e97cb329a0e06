"""The client's ends of the session's side channels: the local CUPS for printing, the
local PulseAudio for sound, and the slave channel for shared folders and USB.

Each device implements ``ClientDevice``; ``qvd.client.main.connect`` uses every device
``client_devices`` gives for the settings:

1. ``params()`` before the connect: the ``qvd.client.*`` parameters it adds (e.g.
   ``qvd.client.printing.enabled=1``);
2. ``open(session)`` once the L7R switched to NX, before nxproxy starts: prepare the
   local end (find or start it) and return nxproxy options (``cups=631``,
   ``media=<port>``); environment for nxproxy goes into ``session.env``;
3. ``attached(session)`` from a thread once nxproxy is connected and relaying (the
   slave channel's requests: shares, USB);
4. ``close()`` on every way out, failures included: undo what ``open`` did.

A device that cannot work says why on stderr and the session goes on without it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from qvd.client import settings

__all__ = ["ClientDevice", "ClientSession", "client_devices", "free_port", "nxproxy_options"]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ClientSession:
    """What the devices know of the session."""

    slave_key: str = field(repr=False)  # the L7R's X-QVD-Slave-Key (authenticates slave calls)
    env: dict[str, str]  # nxproxy's environment (devices may add to it in ``open``)
    slave_port: int | None = None  # where nxproxy listens for client→VM slave connections


class ClientDevice(Protocol):
    name: str

    def params(self) -> dict[str, str]: ...

    def open(self, session: ClientSession) -> list[str]: ...

    def attached(self, session: ClientSession) -> None: ...

    def close(self) -> None: ...


def _registry(conf: settings.ClientSettings) -> list[ClientDevice]:
    """The devices the settings turn on, in order."""
    from qvd.client import printing

    devices: list[ClientDevice] = []
    if printing.enabled(conf):
        devices.append(printing.Printing(conf))
    if conf.flag("client.audio.enable"):  # off unless asked, as the original
        from qvd.client.audio import ClientAudio

        devices.append(ClientAudio(conf))
    if conf.flag("client.file_sharing.enable") is not False:  # default 1, as the original
        from qvd.client.shares import SharesDevice, shares_of

        if shares := shares_of(conf):
            devices.append(SharesDevice(shares))
    if conf.flag("client.usb.enable"):
        from qvd.client.usb import UsbDevice

        devices.append(UsbDevice(conf))
    if conf.flag("client.slave.enable") is not False:  # desktop folders: a 403 unless allowed
        from qvd.client.desktopshares import DesktopSharesDevice

        devices.append(DesktopSharesDevice(conf))
    return devices


client_devices: Callable[[settings.ClientSettings], list[ClientDevice]] = _registry


def nxproxy_options(session: ClientSession, device_options: list[str]) -> list[str]:
    """The channel options of ``nxproxy -S``: the devices' and the slave listener's."""
    options = list(device_options)
    if session.slave_port is not None:
        options.append(f"slave={session.slave_port}")
    return options
