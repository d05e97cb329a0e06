"""``/api/v1/administrators``: administrators and their effective ACLs."""

from __future__ import annotations

from fastapi import Request

from qvd.api.faces.rest import Auth, ObjectId, Params, crud_router, get_one, page
from qvd.api.faces.schemas import AdministratorCreate, AdministratorUpdate, Page

__all__ = ["router"]

router = crud_router("administrators", "administrator", AdministratorCreate, AdministratorUpdate)


@router.get("/{object_id}/acls", response_model=Page, summary="Effective ACLs of an administrator")
def admin_acls(
    request: Request,
    principal: Auth,
    object_id: ObjectId,
    params: Params,
) -> Page:
    get_one(request, principal, "administrator", object_id, ["id"])  # 404 unless visible
    req = params.request("get_acls_in_admins")
    req.filters = {"admin_id": object_id, "-and": [params.filters or {}]}
    return page(request, principal, req)
