"""``/api/v1/acls``: the ACL names."""

from __future__ import annotations

from fastapi import APIRouter, Request

from qvd.api.faces.rest import ERRORS, SECURITY, Auth, Params, page
from qvd.api.faces.schemas import Page

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/acls", tags=["acls"], dependencies=SECURITY, responses=ERRORS)


@router.get("", response_model=Page, summary="List ACLs")
def list_acls(
    request: Request,
    principal: Auth,
    params: Params,
) -> Page:
    return page(request, principal, params.request("acl_get_list"))
