"""The connect-flow and VNC operations the portal uses (common15's contract): the
node's one ``ConnectFlow`` (start/stop/restart, the connect with ``transport="vnc"``)
and the VNC relay of ``qvd.l7r.vnc``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import ModuleType

from qvd.l7r import vnc
from qvd.l7r.auth import Principal
from qvd.l7r.core import L7rCore
from qvd.l7r.flow import Target

__all__ = ["connect", "open_vnc", "restart_vm", "start_vm", "stop_vm", "vnc_module"]

Progress = Callable[[str], None]


def vnc_module() -> ModuleType:
    """``qvd.l7r.vnc`` (kept for the spy's routes, which reach the relay through here)."""
    return vnc


def stop_vm(core: L7rCore, principal: Principal, vm_id: int, progress: Progress) -> str:
    return core.flow.stop_vm(principal, vm_id, progress)


def start_vm(core: L7rCore, principal: Principal, vm_id: int) -> str:
    return core.flow.start_vm(principal, vm_id)


def restart_vm(core: L7rCore, principal: Principal, vm_id: int, progress: Progress) -> str:
    return core.flow.restart_vm(principal, vm_id, progress)


def connect(
    core: L7rCore,
    principal: Principal,
    vm_id: int,
    params: Mapping[str, str],
    *,
    user_ip: str,
    progress: Progress,
    cancelled: threading.Event,
    on_acquired: Callable[[], None],
) -> Target:
    """The shared connect flow for a browser session (``transport="vnc"``)."""
    return core.flow.connect(
        principal, vm_id, params, user_ip=user_ip, progress=progress,
        cancelled=cancelled, on_acquired=on_acquired, transport="vnc",
    )  # fmt: skip


async def open_vnc(target: Target, *, timeout: float) -> vnc.VncStream:
    """The VNC stream of the user's own session (``attach=True``)."""
    return await vnc.open_vnc(target.vma, view_only=False, attach=True, timeout=timeout)
