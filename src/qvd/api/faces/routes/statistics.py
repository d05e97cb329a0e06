"""``/api/v1/statistics``: the dashboard counts (``qvd_objects_statistics``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from qvd.api.actions.core import ActionRequest
from qvd.api.faces.rest import ERRORS, SECURITY, Auth, execute

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1/statistics", tags=["statistics"], dependencies=SECURITY, responses=ERRORS
)


@router.get("", summary="Counts of users, VMs, hosts, OSFs and DIs")
def statistics(request: Request, principal: Auth) -> dict[str, Any]:
    return execute(request, principal, ActionRequest(action="qvd_objects_statistics")).rows[0]
