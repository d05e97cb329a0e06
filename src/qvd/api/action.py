"""QVD's action face: ``POST /api``, ``/api/info``, ``/api/logout`` and the DI
upload and staging routes, with the JSON contract of reference §5.2 so that ``qa4``
and other existing scripts keep working.

Every answer is HTTP 200 with ``{status, message, …}``; ``status`` 0 is success.
Credentials travel in the body (``login``, ``password``, ``tenant``) or as a session
token: ``sid`` in the JSON body, the ``sid`` cookie or a header
(``Authorization: Bearer``, ``X-QVD-Sid``). A ``sid``, ``login`` or ``password`` in the
URL's query string is refused (3100): URLs end up in logs and browser histories.
``current_admin_setup`` with credentials opens a session and returns its ``sid``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from qvd.api import qvdshape
from qvd.api.auth import delete_session
from qvd.api.core import ActionRequest, ActionResult
from qvd.api.errors import ApiError, AuthError, InvalidRequest, Status
from qvd.api.state import (
    SESSION_COOKIE,
    AppState,
    Credentials,
    app_state,
    client_address,
    token_from_headers,
)

__all__ = [
    "JSON_KEYS",
    "OK_MESSAGE",
    "body_credentials",
    "clear_session_cookie",
    "decode_json_keys",
    "end_session",
    "parse_action",
    "read_body",
    "result_body",
    "router",
    "session_cookie",
]

router = APIRouter(include_in_schema=False)
_URL_SECRETS = ("sid", "password", "login")
JSON_KEYS = ("filters", "arguments", "fields", "order_by", "parameters")
"""The request keys that a query string or form carries JSON-encoded."""
OK_MESSAGE = "Successful completion"


def session_cookie(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, path="/api", secure=True, httponly=True,
        samesite="strict",
    )  # fmt: skip


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/api", secure=True, httponly=True)


def end_session(state: AppState, token: str) -> bool:
    """Log the session ``token`` out; False if it did not exist (or had expired)."""
    state.forget(token)
    with Session(state.engine) as session, session.begin():
        return delete_session(session, token)


def result_body(result: ActionResult) -> dict[str, Any]:
    """The success body of an action: ``{status, message, total, rows, …extra}``."""
    body: dict[str, Any] = {
        "status": Status.OK,
        "message": OK_MESSAGE,
        "total": result.total if result.total is not None else len(result.rows),
        "rows": result.rows,
    }
    body.update(result.extra)
    return body


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body())


async def read_body(request: Request) -> dict[str, Any]:
    for key in _URL_SECRETS:
        if key in request.query_params:
            raise AuthError(
                f"'{key}' is not accepted in the URL (it would end up in logs); send it in "
                "the JSON body, a header or the cookie",
                Status.NO_CREDENTIALS,
            )
    if request.method == "GET":
        data: dict[str, Any] = dict(request.query_params)
    else:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            data = {k: v for k, v in form.items() if isinstance(v, str)}
        else:
            raw = await request.body()
            try:
                data = json.loads(raw) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidRequest(f"the body is not JSON: {exc}", Status.BAD_JSON) from None
            if not isinstance(data, dict):
                raise InvalidRequest("the body must be a JSON object", Status.BAD_JSON)
            return data
    return decode_json_keys(data)


def decode_json_keys(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its :data:`JSON_KEYS` given as text decoded (in place)."""
    for key in JSON_KEYS:
        if isinstance(data.get(key), str):
            try:
                data[key] = json.loads(data[key])
            except ValueError:
                raise InvalidRequest(f"{key!r} is not JSON", Status.BAD_JSON) from None
    return data


def _int(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(
            f"{key!r} must be a number, not {value!r}", Status.BAD_ARGUMENT
        ) from None
    if number < 1:
        raise InvalidRequest(f"{key!r} must be at least 1, not {number}", Status.BAD_ARGUMENT)
    return number


def parse_action(data: dict[str, Any]) -> ActionRequest:
    """An :class:`ActionRequest` from a QVD request body."""
    order = data.get("order_by") or {}
    order_fields: Any = []
    direction = "-asc"
    if isinstance(order, dict):
        order_fields = order.get("field") or []
        direction = order.get("order") or "-asc"
    elif isinstance(order, list | str):
        order_fields = order
    if isinstance(order_fields, str):
        order_fields = [order_fields]
    if direction not in ("-asc", "-desc"):
        raise InvalidRequest(
            f"order must be '-asc' or '-desc', not {direction!r}", Status.BAD_ORDER_DIRECTION
        )
    if not isinstance(order_fields, list) or not all(isinstance(f, str) for f in order_fields):
        raise InvalidRequest("order_by.field must be a list of field names", Status.BAD_ORDER_FIELD)
    fields = data.get("fields") or []
    if isinstance(fields, str):
        fields = [fields]
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise InvalidRequest("fields must be a list of field names", Status.BAD_FIELD)
    arguments = data.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise InvalidRequest("arguments must be a JSON object", Status.BAD_ARGUMENT)
    block = min(_int(data, "block", 10000), 10000)
    page = _int(data, "offset", 1)
    return ActionRequest(
        action=data.get("action") or "",
        filters=data.get("filters"),
        arguments=arguments,
        fields=list(fields),
        order_by=[(f, direction == "-desc") for f in order_fields],
        limit=block,
        offset=(page - 1) * block,
    )


def _token(request: Request, data: dict[str, Any]) -> str | None:
    """The body's ``sid``, else a token in the headers or the cookie."""
    sid = data.get("sid")
    return sid if isinstance(sid, str) and sid else token_from_headers(request)


def body_credentials(request: Request, data: dict[str, Any]) -> Credentials:
    params = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    source = params.get("source") if isinstance(params, dict) else None
    token = _token(request, data)
    has_login = data.get("login") is not None or data.get("password") is not None
    return Credentials(
        token=None if has_login else token,
        login=data.get("login") if has_login else None,
        password=data.get("password") if has_login else None,
        tenant=data.get("tenant"),
        source=str(source)[:80] if source is not None else "API",
        address=client_address(request),
    )


def _run(state: AppState, creds: Credentials, data: dict[str, Any]) -> JSONResponse:
    req = parse_action(data)
    opening = creds.token is None and req.action in ("current_admin_setup", "")
    principal = state.authenticate(creds, new_session=opening)
    if req.action == "" and opening:
        req.action = "current_admin_setup"
    body = result_body(qvdshape.run(state.runner, principal, req))
    token = principal.session_token if opening else None
    if token:
        body["sid"] = token
        for row in body["rows"]:
            row["sid"] = token
    response = JSONResponse(body)
    if token:
        session_cookie(response, token, state.session_timeout)
    return response


@router.api_route("/api", methods=["GET", "POST"])
async def action_endpoint(request: Request) -> JSONResponse:
    try:
        data = await read_body(request)
        creds = body_credentials(request, data)
        return await run_in_threadpool(_run, app_state(request), creds, data)
    except ApiError as exc:
        return _error(exc)


def _info(state: AppState) -> dict[str, Any]:
    with Session(state.engine) as session:
        multitenant = state.config.get_bool("wat.multitenant")
        version = session.scalar(text("SELECT version_num FROM alembic_version"))
    public: dict[str, Any] = {}
    for name in state.config.names():
        if name.startswith("api.public."):
            public[name.removeprefix("api.public.")] = state.config.get(name)
    return {
        "status": Status.OK,
        "message": OK_MESSAGE,
        "server_datetime": dt.datetime.now(dt.UTC).isoformat(),
        "multitenant": 1 if multitenant else 0,
        "version": {"database": version},
        "public_configuration": public,
        "auth": {"separators": list(state.config.get("l7r.auth.plugin.default.separators"))},
        "hypervisor": state.config.get("vm.hypervisor"),
    }


@router.api_route("/api/info", methods=["GET", "POST"])
async def info_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_info, app_state(request)))


def _logout(state: AppState, token: str | None) -> JSONResponse:
    if not token:
        return _error(AuthError("no session to log out of", Status.LOGOUT_ERROR))
    if not end_session(state, token):
        return _error(AuthError("the session does not exist or has expired", Status.LOGOUT_ERROR))
    response = JSONResponse({"status": Status.OK, "message": "Logged out"})
    clear_session_cookie(response)
    return response


@router.api_route("/api/logout", methods=["GET", "POST"])
async def logout_endpoint(request: Request) -> JSONResponse:
    try:
        data = await read_body(request)
    except ApiError as exc:
        return _error(exc)
    return await run_in_threadpool(_logout, app_state(request), _token(request, data))
