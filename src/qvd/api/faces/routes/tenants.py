"""``/api/v1/tenants``: tenants (superadmins only)."""

from __future__ import annotations

from qvd.api.faces.rest import crud_router, exec_route
from qvd.api.faces.schemas import TenantCreate, TenantUpdate

__all__ = ["router"]

router = crud_router("tenants", "tenant", TenantCreate, TenantUpdate)
exec_route(router, "tenant", "block", "tenant_update", lambda: {"blocked": True})
exec_route(router, "tenant", "unblock", "tenant_update", lambda: {"blocked": False})
