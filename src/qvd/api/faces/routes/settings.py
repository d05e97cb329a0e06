"""``/api/v1/config/wat``: a tenant's WAT settings (language, page size);
``/api/v1/config/ssl``: the L7R's TLS material, as PEM text (superadmins only)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from qvd.api.actions.core import ActionRequest
from qvd.api.errors import NotFound, Status
from qvd.api.faces.rest import ERRORS, SECURITY, Auth, Params, TenantQuery, execute, page
from qvd.api.faces.schemas import Page
from qvd.api.services.ssl_material import MAX_CHARS

__all__ = ["router"]

Pem = Field(min_length=1, max_length=MAX_CHARS)


class WatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Literal["es", "en", "auto", "default"] | None = None
    block: int | None = Field(default=None, ge=1, le=10000)
    tenant_id: int | None = Field(default=None, ge=-(2**31), lt=2**31)


class SslMaterial(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert: str = Pem
    key: str = Pem
    ca: str | None = Field(default=None, max_length=MAX_CHARS)
    crl: str | None = Field(default=None, max_length=MAX_CHARS)


router = APIRouter(
    prefix="/api/v1/config", tags=["configs"], dependencies=SECURITY, responses=ERRORS
)


@router.get("/wat", response_model=Page, summary="WAT settings (mine, or a tenant's)")
def list_wat(
    request: Request, principal: Auth, params: Params, tenant_id: TenantQuery = None
) -> Page:
    return page(request, principal, params.request("config_wat_get_list", tenant_id))


@router.put("/wat", summary="Change the WAT language or page size")
def set_wat(request: Request, principal: Auth, body: WatSettings) -> dict[str, Any]:
    args = body.model_dump(exclude_none=True)
    execute(request, principal, ActionRequest(action="config_wat_update", arguments=args))
    filters = {"tenant_id": body.tenant_id} if body.tenant_id is not None else None
    rows = execute(
        request, principal, ActionRequest(action="config_wat_get_list", filters=filters)
    ).rows
    if not rows:
        raise NotFound("the tenant is gone", Status.ZERO_SELECTED)
    return rows[0]


@router.put("/ssl", status_code=204, summary="Install the L7R certificate, key, CA and CRL")
def set_ssl(request: Request, principal: Auth, body: SslMaterial) -> Response:
    args = body.model_dump(exclude_none=True)
    execute(request, principal, ActionRequest(action="config_ssl", arguments=args))
    return Response(status_code=204)
