"""``/api/v1/logs``: the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Request

from qvd.api.faces.rest import ERRORS, SECURITY, Auth, Params, page
from qvd.api.faces.schemas import Page

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/logs", tags=["logs"], dependencies=SECURITY, responses=ERRORS)


@router.get("", response_model=Page, summary="Read the audit log")
def list_logs(
    request: Request,
    principal: Auth,
    params: Params,
) -> Page:
    if not params.order_by:
        params.order_by = [("id", True)]
    return page(request, principal, params.request("log_get_list"))
