"""``/api/v1/dis``: disk images, their tags, upload, staging import and publishing.
The action face's ``/api/di/upload`` and ``/api/di/staging`` live here too."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from qvd.api.action import OK_MESSAGE, body_credentials, read_body
from qvd.api.di_import import import_from_staging, import_upload, max_image_size
from qvd.api.errors import ApiError, InvalidRequest, Status
from qvd.api.images import too_large
from qvd.api.principal import Principal
from qvd.api.rest import (
    ERRORS,
    SECURITY,
    Auth,
    Params,
    arguments,
    crud_router,
    exec_route,
    execute,
)
from qvd.api.schemas import NESTED, Created, DiCreate, DiUpdate, Page
from qvd.api.state import Credentials, app_state, client_address, token_from_headers

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
    result = execute(request, principal, params.request("tag_get_list"))
    return Page(total=result.total or 0, rows=result.rows)


# room for the form's other fields and the multipart framing around the file
_FORM_OVERHEAD = 1 << 20


def _refuse_oversized(request: Request, max_bytes: int) -> None:
    """Refuse an upload whose declared length cannot fit, before any of it is read
    (the form parser would otherwise spool all of it to a temporary file first)."""
    try:
        length = int(request.headers.get("content-length", ""))
    except ValueError:
        return
    if length > max_bytes + _FORM_OVERHEAD:
        raise too_large(length, max_bytes, "the upload")


async def _upload(request: Request, principal: Principal | None) -> int:
    state = app_state(request)
    _refuse_oversized(request, max_image_size(state))
    form = await request.form(max_files=1, max_fields=20)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("the form has no 'file' part", Status.MISSING_ARGUMENT)
    raw = form.get("arguments") or "{}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest("'arguments' must be a JSON object", Status.BAD_JSON)
    args = {NESTED.get(k, k): v for k, v in args.items()}
    if principal is None:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        creds = Credentials(
            token=fields.get("sid") or token_from_headers(request),
            login=fields.get("login"), password=fields.get("password"),
            tenant=fields.get("tenant"), source="API", address=client_address(request),
        )  # fmt: skip
        if creds.login is not None:
            creds = Credentials(login=creds.login, password=creds.password, tenant=creds.tenant,
                                source="API", address=creds.address)  # fmt: skip
        principal = await run_in_threadpool(state.authenticate, creds)
    try:
        return await run_in_threadpool(
            import_upload, state, principal, args, upload.file, upload.filename or "", upload.size
        )
    finally:
        await upload.close()


@router.post("/upload", status_code=201, response_model=Created, summary="Upload an image file")
async def upload_di(request: Request, principal: Auth) -> Created:
    """Multipart form: ``file`` (the image) and ``arguments`` (JSON: osf_id, version,
    tags, … as for creating a DI). The file is checked, imported and published."""
    return Created(id=await _upload(request, await run_in_threadpool(principal.principal)))


@router.post("/staging", status_code=201, response_model=Created, summary="Import from staging")
def staging_di(request: Request, principal: Auth, body: DiCreate) -> Created:
    state = app_state(request)
    return Created(id=import_from_staging(state, principal.principal(), arguments(body)))


def _ok(di_id: int) -> JSONResponse:
    return JSONResponse({"status": 0, "message": OK_MESSAGE, "total": 1, "rows": [{"id": di_id}]})


@action_router.post("/api/di/upload")
async def action_upload(request: Request) -> JSONResponse:
    try:
        return _ok(await _upload(request, None))
    except ApiError as exc:
        return JSONResponse(exc.body())


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
