"""``/api/v1/hosts``: nodes (superadmins only); block, unblock, stop their VMs."""

from __future__ import annotations

from qvd.api.faces.rest import crud_router, exec_route
from qvd.api.faces.schemas import HostCreate, HostUpdate

__all__ = ["router"]

router = crud_router("hosts", "host", HostCreate, HostUpdate)
exec_route(router, "host", "block", "host_update", lambda: {"blocked": True})
exec_route(router, "host", "unblock", "host_update", lambda: {"blocked": False})
exec_route(router, "host", "stop-vms", "host_stop_vms", dict)
