"""The REST face's shared machinery: authentication of a request, list parameters,
and a router factory for the usual five routes of a resource. Routes run the same
actions as ``POST /api`` through :func:`qvd.api.actions.dispatch.run_action`.

List parameters: ``filters`` (QVD's JSON filter object, reference §5.2), ``fields``
(comma-separated), ``order_by`` (comma-separated, ``-name`` for descending),
``limit`` (1-10000, default 100) and ``offset`` (rows to skip).

This module does not use postponed annotations: the routes built by ``crud_router``
take their body model from a variable, which FastAPI must see as a class.
"""

import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer
from pydantic import BaseModel

from qvd.api.actions.core import ActionRequest, ActionResult
from qvd.api.actions.dispatch import run_action
from qvd.api.actions.principal import Principal
from qvd.api.errors import ApiError, InvalidRequest, MultipleFailures, NotFound, Status
from qvd.api.faces.schemas import NESTED, Created, ErrorBody, Page
from qvd.api.shell.state import (
    SESSION_COOKIE,
    SESSION_HEADER,
    Credentials,
    app_state,
    client_address,
    token_from_headers,
)

__all__ = [
    "ERRORS",
    "SECURITY",
    "Auth",
    "Caller",
    "ListParams",
    "ObjectId",
    "Params",
    "TenantQuery",
    "arguments",
    "crud_router",
    "current_principal",
    "exec_route",
    "execute",
    "get_one",
    "nested_names",
    "page",
    "single",
]

_bearer = HTTPBearer(auto_error=False, description="Session token from POST /api/v1/sessions")
_header = APIKeyHeader(name=SESSION_HEADER, auto_error=False)
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False)
SECURITY = [Security(_bearer), Security(_header), Security(_cookie)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 429, 503)
}
ObjectId = Annotated[int, Path(ge=-(2**31), lt=2**31, description="Object id")]
TenantQuery = Annotated[int | None, Query(ge=-1, lt=2**31)]


class Caller:
    """Who calls, authenticated on first use, in the endpoint's own worker thread (a
    synchronous dependency would cost one more thread hop per request)."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._principal: Principal | None = None

    def principal(self) -> Principal:
        if self._principal is None:
            creds = Credentials(
                token=token_from_headers(self._request),
                source="REST",
                address=client_address(self._request),
            )
            self._principal = app_state(self._request).authenticate(creds)
        return self._principal


async def current_principal(request: Request) -> Caller:
    return Caller(request)


class ListParams:
    """A list's query parameters, parsed (FastAPI fills them through :meth:`dependency`)."""

    def __init__(
        self, filters: str | None, fields: str | None, order_by: str | None, limit: int,
        offset: int,
    ) -> None:  # fmt: skip
        self.filters: Any = None
        if filters:
            try:
                self.filters = json.loads(filters)
            except ValueError:
                raise InvalidRequest("filters is not JSON", Status.BAD_JSON) from None
        self.fields = [f.strip() for f in (fields or "").split(",") if f.strip()]
        self.order_by = [
            (f.strip().lstrip("-"), f.strip().startswith("-"))
            for f in (order_by or "").split(",")
            if f.strip().lstrip("-")
        ]
        self.limit = limit
        self.offset = offset

    @classmethod
    async def dependency(
        cls,
        filters: Annotated[str | None, Query(description="QVD filter object (JSON)")] = None,
        fields: Annotated[str | None, Query(description="comma-separated fields")] = None,
        order_by: Annotated[str | None, Query(description="fields, '-' for descending")] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 100,
        offset: Annotated[int, Query(ge=0, lt=2**31)] = 0,
    ) -> "ListParams":
        return cls(filters, fields, order_by, limit, offset)

    def request(self, action: str, tenant_id: int | None = None) -> ActionRequest:
        """``action`` over this page; a ``tenant_id`` is added to the filters."""
        filters = self.filters
        if tenant_id is not None:
            filters = {**(filters or {}), "tenant_id": tenant_id}
        return ActionRequest(
            action=action, filters=filters, fields=self.fields, order_by=self.order_by,
            limit=self.limit, offset=self.offset,
        )  # fmt: skip


def arguments(body: BaseModel | None) -> dict[str, Any]:
    """Action arguments from a REST body (unset fields left out, nested names mapped)."""
    if body is None:
        return {}
    return nested_names(body.model_dump(exclude_unset=True, mode="json"))


def nested_names(args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` with the REST names of nested arguments mapped to the action's
    (``properties`` → ``__properties__``, …; see ``NESTED``)."""
    return {NESTED.get(k, k): v for k, v in args.items()}


def execute(request: Request, caller: "Caller | Principal", req: ActionRequest) -> ActionResult:
    principal = caller.principal() if isinstance(caller, Caller) else caller
    return run_action(app_state(request).runner, principal, req)


def page(request: Request, caller: "Caller | Principal", req: ActionRequest) -> Page:
    """Run a list action: one page of rows and the total."""
    result = execute(request, caller, req)
    return Page(total=result.total or 0, rows=result.rows)


def single(request: Request, principal: "Caller | Principal", req: ActionRequest) -> ActionResult:
    """Run an action on one object: its own error, not a 1200 list of one."""
    try:
        return execute(request, principal, req)
    except MultipleFailures as exc:
        if len(exc.failures) == 1:
            raise next(iter(exc.failures.values())) from None
        raise


def get_one(
    request: Request,
    principal: "Caller | Principal",
    obj: str,
    object_id: int,
    fields: list[str] | None = None,
) -> dict[str, Any]:
    req = ActionRequest(
        action=f"{obj}_get_list",
        filters={"id": object_id},
        fields=fields or [],
        limit=1,
        count=False,
    )
    try:
        rows = execute(request, principal, req).rows
    except ApiError as exc:
        if exc.code == Status.FORBIDDEN_FILTER:  # cannot see ids: same as not found
            raise NotFound(f"there is no {obj} {object_id}", Status.ZERO_SELECTED) from None
        raise
    if not rows:
        raise NotFound(f"there is no {obj} {object_id}", Status.ZERO_SELECTED)
    return rows[0]


Auth = Annotated[Caller, Depends(current_principal)]
Params = Annotated[ListParams, Depends(ListParams.dependency)]


def crud_router(
    noun: str,
    obj: str,
    create_model: type[BaseModel] | None,
    update_model: type[BaseModel] | None,
) -> APIRouter:
    """``GET /noun``, ``GET /noun/{id}``, ``POST /noun``, ``PATCH /noun/{id}``,
    ``DELETE /noun/{id}`` over the ``<obj>_*`` actions."""
    router = APIRouter(prefix=f"/api/v1/{noun}", tags=[noun], dependencies=SECURITY,
                       responses=ERRORS)  # fmt: skip

    @router.get("", response_model=Page, summary=f"List {noun}")
    def list_objects(request: Request, principal: Auth, params: Params) -> Page:
        return page(request, principal, params.request(f"{obj}_get_list"))

    @router.get("/{object_id}", summary=f"One {obj}")
    def get_object(
        request: Request,
        principal: Auth,
        object_id: ObjectId,
        fields: Annotated[str | None, Query(description="comma-separated fields")] = None,
    ) -> dict[str, Any]:
        names = [f.strip() for f in (fields or "").split(",") if f.strip()]
        return get_one(request, principal, obj, object_id, names)

    if create_model is not None:
        model = create_model

        @router.post("", status_code=201, response_model=Created, summary=f"Create a {obj}")
        def create_object(request: Request, principal: Auth, body: model) -> Created:  # type: ignore[valid-type]
            req = ActionRequest(action=f"{obj}_create", arguments=arguments(body))
            return Created(id=execute(request, principal, req).rows[0]["id"])

    if update_model is not None:
        umodel = update_model

        @router.patch("/{object_id}", summary=f"Change a {obj}")
        def update_object(
            request: Request,
            principal: Auth,
            object_id: ObjectId,
            body: umodel,  # type: ignore[valid-type]
        ) -> dict[str, Any]:
            req = ActionRequest(
                action=f"{obj}_update", filters={"id": object_id}, arguments=arguments(body)
            )
            single(request, principal, req)
            return get_one(request, principal, obj, object_id)

    @router.delete("/{object_id}", status_code=204, summary=f"Delete a {obj}")
    def delete_object(request: Request, principal: Auth, object_id: ObjectId) -> Response:
        single(request, principal, ActionRequest(action=f"{obj}_delete", filters={"id": object_id}))
        return Response(status_code=204)

    return router


def exec_route(
    router: APIRouter, obj: str, verb: str, action: str, make_args: Callable[[], dict[str, Any]]
) -> None:
    """``POST /noun/{id}/verb`` running ``action`` on that object."""

    @router.post(f"/{{object_id}}/{verb}", summary=f"{verb} a {obj}", name=f"{obj}_{verb}")
    def run(request: Request, principal: Auth, object_id: ObjectId) -> dict[str, Any]:
        req = ActionRequest(action=action, filters={"id": object_id}, arguments=make_args())
        single(request, principal, req)
        return get_one(request, principal, obj, object_id)
