"""``/api/v1/configs``: configuration tokens stored in the database."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from qvd.api.actions.core import ActionRequest
from qvd.api.faces.rest import ERRORS, SECURITY, Auth, Params, TenantQuery, execute, page
from qvd.api.faces.schemas import ConfigSet, Page

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1/configs", tags=["configs"], dependencies=SECURITY, responses=ERRORS
)


@router.get("", response_model=Page, summary="Tokens, defaults and database values")
def list_configs(
    request: Request,
    principal: Auth,
    params: Params,
    tenant_id: TenantQuery = None,
) -> Page:
    return page(request, principal, params.request("config_get", tenant_id))


@router.put("/{key}", summary="Set a token in the database")
def set_config(request: Request, principal: Auth, key: str, body: ConfigSet) -> dict[str, Any]:
    args: dict[str, Any] = {"key": key, "value": body.value}
    if body.tenant_id is not None:
        args["tenant_id"] = body.tenant_id
    execute(request, principal, ActionRequest(action="config_set", arguments=args))
    return {"key": key, "value": body.value}


@router.delete("/{key}", status_code=204, summary="Reset a token to its default")
def delete_config(
    request: Request, principal: Auth, key: str, tenant_id: TenantQuery = None
) -> Response:
    filters: dict[str, Any] = {"key": key}
    if tenant_id is not None:
        filters["tenant_id"] = tenant_id
    execute(request, principal, ActionRequest(action="config_delete", filters=filters))
    return Response(status_code=204)
