"""The connect-flow and VNC operations the portal uses, by their shared contract
(common15: ``ConnectFlow.start_vm/restart_vm``, ``connect(..., transport="vnc")``,
``Target.vma``, ``qvd.l7r.vnc.open_vnc/bridge``).

TRANSITIONAL: while the ``connect`` and ``vnc`` branches are not on main, an operation
the installed ``qvd.l7r`` lacks falls back here (start/restart by the store's rules; no
browser session without ``qvd.l7r.vnc``: a clear 503). Once they land this module is
only the direct calls.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from qvd.db.loadbalancer import NoHostAvailable, Weights, pick_host_for_vm
from qvd.l7r import store
from qvd.l7r.auth import Principal
from qvd.l7r.core import L7rCore
from qvd.l7r.errors import Unavailable
from qvd.l7r.flow import Target

__all__ = ["connect", "open_vnc", "restart_vm", "start_vm", "stop_vm", "vnc_module"]

Progress = Callable[[str], None]


def vnc_module() -> Any:
    """``qvd.l7r.vnc`` (the vnc engineer's), or 503 when this build lacks it."""
    try:
        return importlib.import_module("qvd.l7r.vnc")
    except ImportError:
        raise Unavailable(
            "browser sessions are not available on this node (no VNC relay)"
        ) from None


def stop_vm(core: L7rCore, principal: Principal, vm_id: int, progress: Progress) -> str:
    return core.flow.stop_vm(principal, vm_id, progress)


def start_vm(core: L7rCore, principal: Principal, vm_id: int) -> str:
    own = getattr(core.flow, "start_vm", None)
    if own is not None:
        return str(own(principal, vm_id))
    return _start_by_store(core, principal, vm_id)


def _start_by_store(core: L7rCore, principal: Principal, vm_id: int) -> str:
    """TRANSITIONAL (before ``ConnectFlow.start_vm``): the store's start rules, as the
    NX connect applies them (the store's functions looked up: the connect branch
    replaces them with ``qvd.db.vmrules``)."""
    core.flow.check_vm(principal, vm_id)
    assign_host: Any = getattr(store, "assign_host")  # noqa: B009
    request_start: Any = getattr(store, "request_start")  # noqa: B009
    with core.engine.begin() as conn:
        rt = store.runtime(conn, vm_id)
    if rt.vm_state != "stopped":
        return f"Machine is {rt.vm_state}"
    if rt.host_id is None:
        with Session(core.engine) as session, session.begin():
            try:
                chosen = pick_host_for_vm(session, vm_id, Weights.from_config(core.live.get()))
            except NoHostAvailable as exc:
                raise Unavailable(f"Unable to assign VM {vm_id} to a host: {exc}") from None
            assign_host(session.connection(), vm_id, chosen)
    with core.engine.begin() as conn:
        if not request_start(conn, vm_id):
            raise Unavailable(f"VM {vm_id} cannot be started now")
    return "Machine starting"


def restart_vm(core: L7rCore, principal: Principal, vm_id: int, progress: Progress) -> str:
    own = getattr(core.flow, "restart_vm", None)
    if own is not None:
        return str(own(principal, vm_id, progress))
    core.flow.stop_vm(principal, vm_id, progress)
    return _start_by_store(core, principal, vm_id)


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
    flow: Any = core.flow
    try:
        return flow.connect(  # type: ignore[no-any-return]
            principal, vm_id, params, user_ip=user_ip, progress=progress,
            cancelled=cancelled, on_acquired=on_acquired, transport="vnc",
        )  # fmt: skip
    except TypeError as exc:
        if "transport" not in str(exc):
            raise
    return core.flow.connect(
        principal, vm_id, params, user_ip=user_ip, progress=progress,
        cancelled=cancelled, on_acquired=on_acquired,
    )  # fmt: skip


async def open_vnc(target: Target, *, timeout: float) -> Any:
    """The VNC stream of the user's own session (``attach=True``)."""
    vnc = vnc_module()
    endpoint = getattr(target, "vma", None)
    if endpoint is None:
        raise Unavailable("this node's connect flow gives no VMA endpoint for VNC")
    return await vnc.open_vnc(endpoint, view_only=False, attach=True, timeout=timeout)
