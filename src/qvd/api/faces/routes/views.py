"""``/api/v1/views``: a tenant's default WAT views (which list columns and filters the
web admin shows); ``/api/v1/myviews``: the caller's own views over them.

``GET`` lists (``/myviews``: the effective view, each row with its ``source``),
``PUT`` creates or changes one row (``property: true`` names a custom property key
instead of a list field), ``DELETE`` resets the rows its query selects (all without
one). Superadmins pick a tenant with ``tenant_id``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from qvd.api.actions.core import ActionRequest
from qvd.api.faces.rest import ERRORS, SECURITY, Auth, Params, TenantQuery, execute, page
from qvd.api.faces.schemas import Page

__all__ = ["mine_router", "router"]

ViewObject = Literal["user", "vm", "log", "host", "osf", "di", "role", "administrator", "tenant"]
ViewType = Literal["list_column", "filter"]
DeviceType = Literal["desktop", "mobile"]


class MyViewSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    qvd_object: ViewObject
    view_type: ViewType
    device_type: DeviceType = "desktop"
    field: str = Field(min_length=1, max_length=1024)
    property: bool = False
    visible: bool


class ViewSet(MyViewSet):
    tenant_id: int | None = Field(default=None, ge=-(2**31), lt=2**31)


def _set_action(scope: str, body: MyViewSet) -> ActionRequest:
    kind = "property" if body.property else "attribute"
    args = body.model_dump(exclude_none=True, exclude={"property"})
    return ActionRequest(action=f"{scope}_{kind}_view_set", arguments=args)


def _reset_filters(
    qvd_object: ViewObject | None = None,
    view_type: ViewType | None = None,
    device_type: DeviceType | None = None,
    field: Annotated[str | None, Query(max_length=1024)] = None,
    is_property: Annotated[bool | None, Query(alias="property")] = None,
) -> dict[str, Any]:
    """The query of a reset (a dependency), as the reset action's filters."""
    given = {
        "qvd_object": qvd_object, "view_type": view_type, "device_type": device_type,
        "field": field, "property": is_property,
    }  # fmt: skip
    return {k: v for k, v in given.items() if v is not None}


ResetFilters = Annotated[dict[str, Any], Depends(_reset_filters)]


router = APIRouter(prefix="/api/v1/views", tags=["views"], dependencies=SECURITY, responses=ERRORS)
mine_router = APIRouter(
    prefix="/api/v1/myviews", tags=["views"], dependencies=SECURITY, responses=ERRORS
)


@router.get("", response_model=Page, summary="A tenant's default views")
def list_views(
    request: Request, principal: Auth, params: Params, tenant_id: TenantQuery = None
) -> Page:
    return page(request, principal, params.request("tenant_view_get_list", tenant_id))


@router.put("", summary="Show or hide one column or filter by default")
def set_view(request: Request, principal: Auth, body: ViewSet) -> dict[str, Any]:
    execute(request, principal, _set_action("tenant", body))
    return body.model_dump(exclude_none=True)


@router.delete("", status_code=204, summary="Reset a tenant's views to the WAT defaults")
def reset_views(
    request: Request, principal: Auth, filters: ResetFilters, tenant_id: TenantQuery = None
) -> Response:
    if tenant_id is not None:
        filters["tenant_id"] = tenant_id
    execute(request, principal, ActionRequest(action="tenant_view_reset", filters=filters))
    return Response(status_code=204)


@mine_router.get("", response_model=Page, summary="My effective views")
def list_my_views(request: Request, principal: Auth, params: Params) -> Page:
    return page(request, principal, params.request("admin_view_get_list"))


@mine_router.put("", summary="Show or hide one column or filter for me")
def set_my_view(request: Request, principal: Auth, body: MyViewSet) -> dict[str, Any]:
    execute(request, principal, _set_action("admin", body))
    return body.model_dump()


@mine_router.delete("", status_code=204, summary="Drop my own views (back to the tenant's)")
def reset_my_views(request: Request, principal: Auth, filters: ResetFilters) -> Response:
    execute(request, principal, ActionRequest(action="admin_view_reset", filters=filters))
    return Response(status_code=204)
