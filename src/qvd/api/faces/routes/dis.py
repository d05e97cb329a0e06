"""``/api/v1/dis``: disk images, their tags, upload, staging import and publishing.
The action face's ``/api/di/upload`` and ``/api/di/staging`` live here too."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from qvd.api.actions.core import ActionResult
from qvd.api.actions.principal import Principal
from qvd.api.errors import (
    ApiError,
    AuthError,
    InvalidRequest,
    RateLimited,
    Status,
    http_status,
)
from qvd.api.faces.action import body_credentials, read_body, result_body
from qvd.api.faces.rest import (
    ERRORS,
    SECURITY,
    Auth,
    Params,
    arguments,
    crud_router,
    exec_route,
    nested_names,
    page,
)
from qvd.api.faces.schemas import Created, DiCreate, DiUpdate, Page
from qvd.api.shell.state import Credentials, app_state, client_address, token_from_headers
from qvd.api.uploads.di_import import (
    import_from_staging,
    import_upload,
    max_image_size,
    upload_folder,
    upload_name,
    upload_reserve,
)
from qvd.api.uploads.form_stream import receive_upload
from qvd.api.uploads.images import discard

__all__ = ["action_router", "router", "tags_router"]

router = crud_router("dis", "di", DiCreate, DiUpdate)
exec_route(router, "di", "publish", "di_publish", dict)
exec_route(router, "di", "block", "di_update", lambda: {"blocked": True})
exec_route(router, "di", "unblock", "di_update", lambda: {"blocked": False})
tags_router = APIRouter(prefix="/api/v1/di-tags", tags=["dis"], dependencies=SECURITY,
                        responses=ERRORS)  # fmt: skip
action_router = APIRouter(include_in_schema=False)


@tags_router.get("", response_model=Page, summary="DI tags (one per OSF)")
def list_tags(request: Request, principal: Auth, params: Params) -> Page:
    return page(request, principal, params.request("tag_get_list"))


def _arguments(fields: Mapping[str, str]) -> dict[str, Any]:
    try:
        args = json.loads(fields.get("arguments") or "{}")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest("'arguments' must be a JSON object", Status.BAD_JSON)
    return nested_names(args)


_CREDENTIAL_FIELDS = ("login", "password", "tenant", "sid")


def _with_query(request: Request, fields: Mapping[str, str]) -> dict[str, str]:
    """The form's fields over the credentials of the query string (the WAT sends its
    ``sid`` or ``login``/``password``/``tenant`` there)."""
    merged = {k: v for k, v in request.query_params.items() if k in _CREDENTIAL_FIELDS}
    merged.update(fields)
    return merged


def _credentials(request: Request, fields: Mapping[str, str]) -> Credentials:
    """The action face's credentials: ``login`` (+ ``password``, ``tenant``), else
    ``sid``, from the form or the query string, else a token in the headers."""
    address = client_address(request)
    fields = _with_query(request, fields)
    if fields.get("login") is not None:
        return Credentials(login=fields.get("login"), password=fields.get("password"),
                           tenant=fields.get("tenant"), source="API", address=address)  # fmt: skip
    return Credentials(token=fields.get("sid") or token_from_headers(request), source="API",
                       address=address)  # fmt: skip


def _complete(request: Request, fields: Mapping[str, str]) -> bool:
    """Whether a whole set of credentials is known before the file part: in the
    fields before it, the query string or the headers."""
    merged = _with_query(request, fields)
    if merged.get("sid") or token_from_headers(request):
        return True
    return all(k in merged for k in ("login", "password"))


class _Upload:
    """One upload. Who sends it is known before a byte of its file part is read (a
    REST caller's header; the action face's query string, headers or the fields that
    come before the file), and may create DIs: an anonymous or unauthorised body is
    refused unread (a credentials field after the file authenticates the upload again
    once it is in, the last one winning as in any form)."""

    def __init__(self, request: Request, principal: Principal | None) -> None:
        self.request = request
        self.state = app_state(request)
        self.principal = principal
        self.early: Credentials | None = None  # what authenticated the action face early

    async def before_file(self, fields: Mapping[str, str], filename: str) -> None:
        """Refuse before the file is read what is not allowed to send one."""
        args = _arguments(fields) if "arguments" in fields else None
        if self.principal is None:
            if not _complete(self.request, fields):
                raise AuthError(
                    "an upload must carry its credentials (sid, or login and password) "
                    "before the file part: in the query string, a header or the form fields "
                    "that come first",
                    Status.NO_CREDENTIALS,
                )
            self.early = _credentials(self.request, fields)
            self.principal = await run_in_threadpool(self.state.authenticate, self.early)
        self.principal.require("di.create.", what="uploading a DI")
        if args is not None:
            upload_name(self.principal, args, filename)

    async def run(self) -> int:
        """Stream the form's file into the images directory (once ``before_file`` let
        it), authenticate again if credentials came after it, then check and import."""
        state = self.state
        folder, limit = upload_folder(state), max_image_size(state)
        form = await receive_upload(
            self.request, folder, max_bytes=limit, on_file=self.before_file,
            reserve=upload_reserve(state),
        )  # fmt: skip
        try:
            args = _arguments(form.fields)
            principal = self.principal
            if principal is None or self.early is not None:
                creds = _credentials(self.request, form.fields)
                if principal is None or creds != self.early:
                    principal = await run_in_threadpool(state.authenticate, creds)
        except BaseException:
            discard(form.file)
            raise
        return await run_in_threadpool(
            import_upload, state, principal, args, form.file, form.filename
        )


@router.post("/upload", status_code=201, response_model=Created, summary="Upload an image file")
async def upload_di(request: Request, principal: Auth) -> Created | JSONResponse:
    """Multipart form: ``file`` (the image) and ``arguments`` (JSON: osf_id, version,
    tags, … as for creating a DI). The file is streamed into the images directory as it
    arrives (``api.di.upload.max_size`` applies as it streams), checked, imported and
    published. A refusal (no or bad credentials included) closes the connection: the
    rest of the body is never read."""
    try:
        sender = await run_in_threadpool(principal.principal)
        return Created(id=await _Upload(request, sender).run())
    except ApiError as exc:
        headers = {"Connection": "close"}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(exc.body(), status_code=http_status(exc), headers=headers)


@router.post("/staging", status_code=201, response_model=Created, summary="Import from staging")
def staging_di(request: Request, principal: Auth, body: DiCreate) -> Created:
    state = app_state(request)
    return Created(id=import_from_staging(state, principal.principal(), arguments(body)))


def _ok(di_id: int) -> JSONResponse:
    return JSONResponse(result_body(ActionResult(rows=[{"id": di_id}])))


@action_router.post("/api/di/upload")
async def action_upload(request: Request) -> JSONResponse:
    """A refusal closes the connection: the rest of a refused body (a file part from an
    unauthenticated sender, say) is never read, not even to be dropped."""
    try:
        return _ok(await _Upload(request, None).run())
    except ApiError as exc:
        return JSONResponse(exc.body(), headers={"Connection": "close"})


@action_router.post("/api/di/staging")
async def action_staging(request: Request) -> JSONResponse:
    try:
        data = await read_body(request)
        state = app_state(request)
        principal = await run_in_threadpool(state.authenticate, body_credentials(request, data))
        args: Any = data.get("arguments") or {}
        if not isinstance(args, dict):
            raise InvalidRequest("arguments must be a JSON object", Status.BAD_ARGUMENT)
        return _ok(await run_in_threadpool(import_from_staging, state, principal, args))
    except ApiError as exc:
        return JSONResponse(exc.body())
