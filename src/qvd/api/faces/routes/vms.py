"""``/api/v1/vms``: VMs, and starting, stopping, disconnecting and blocking them."""

from __future__ import annotations

from qvd.api.faces.rest import crud_router, exec_route
from qvd.api.faces.schemas import VmCreate, VmUpdate

__all__ = ["router"]

router = crud_router("vms", "vm", VmCreate, VmUpdate)
exec_route(router, "vm", "start", "vm_start", dict)
exec_route(router, "vm", "stop", "vm_stop", dict)
exec_route(router, "vm", "disconnect", "vm_user_disconnect", dict)
exec_route(router, "vm", "block", "vm_update", lambda: {"blocked": True})
exec_route(router, "vm", "unblock", "vm_update", lambda: {"blocked": False})
