"""``/api/v1/roles``: roles, their ACLs (with deny) and inheritance."""

from __future__ import annotations

from fastapi import Request

from qvd.api.faces.rest import Auth, ObjectId, Params, crud_router, get_one, page
from qvd.api.faces.schemas import Page, RoleCreate, RoleUpdate

__all__ = ["router"]

router = crud_router("roles", "role", RoleCreate, RoleUpdate)


@router.get("/{object_id}/acls", response_model=Page, summary="Effective ACLs of a role")
def role_acls(
    request: Request,
    principal: Auth,
    object_id: ObjectId,
    params: Params,
) -> Page:
    get_one(request, principal, "role", object_id, ["id"])  # 404 unless visible
    req = params.request("get_acls_in_roles")
    req.filters = {"role_id": object_id, "-and": [params.filters or {}]}
    return page(request, principal, req)
