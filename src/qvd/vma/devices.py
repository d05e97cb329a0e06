"""The session's devices: sound, printing, shared folders, USB (the NX side channels'
ends inside the desktop).

Each device implements ``Device``; ``SessionRunner`` calls every device of ``DEVICES``
when the session changes state, from its own thread, in the order of ``DEVICES``:

- ``session_env`` before the X session starts: variables its programs need (e.g.
  ``PULSE_SERVER``);
- ``connected`` once the NX client is attached (first connect and every resume);
- ``suspended`` when the client went away and the session waits;
- ``stopped`` when the session ended (nxagent gone): everything started is stopped,
  everything added is removed.

A device only acts when ``ctx.plan`` has its channel on. A failing device is logged and
never stops the session or the other devices (a desktop without sound is still a
desktop). Devices run programs as the session's user unless a step needs root in the VM
(the CUPS queues); they never write a value from ``ctx.params`` raw into a file or a
command line.
"""

from __future__ import annotations

import logging
import pwd
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from qvd.vma.channels import ChannelPlan

__all__ = ["DEVICES", "Device", "DeviceContext", "notify_devices", "session_env"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceContext:
    """What a device knows of the session."""

    user: pwd.struct_passwd
    display: int
    plan: ChannelPlan
    params: Mapping[str, str] = field(repr=False)  # the x_start parameters (secrets too)
    setting: Callable[[str], str]  # the VMA's configuration
    run_dir: Path  # root's /run/qvd (or the test's)
    log_dir: Path
    env: Mapping[str, str]  # the user's environment (user_environment), DISPLAY included


class Device(Protocol):
    name: str

    def session_env(self, ctx: DeviceContext) -> dict[str, str]: ...

    def connected(self, ctx: DeviceContext) -> None: ...

    def suspended(self, ctx: DeviceContext) -> None: ...

    def stopped(self, ctx: DeviceContext) -> None: ...


def _registry() -> list[Device]:
    """Every device, in the order they are called (imported here, not at module load,
    so a device's module may import the session's helpers)."""
    from qvd.vma.audio import AudioDevice
    from qvd.vma.printing import Printing
    from qvd.vma.shares import SharesDevice
    from qvd.vma.usb import UsbDevice

    return [Printing(), AudioDevice(), SharesDevice(), UsbDevice()]


DEVICES: Callable[[], list[Device]] = _registry


def session_env(devices: list[Device], ctx: DeviceContext) -> dict[str, str]:
    env: dict[str, str] = {}
    for device in devices:
        try:
            env.update(device.session_env(ctx))
        except Exception:  # a device never stops the session
            log.exception("device %s: session environment failed", device.name)
    return env


def notify_devices(devices: list[Device], ctx: DeviceContext, state: str) -> None:
    """Call ``state`` (connected, suspended or stopped) on every device."""
    for device in devices:
        try:
            getattr(device, state)(ctx)
        except Exception:  # a device never stops the session
            log.exception("device %s: %s failed", device.name, state)
