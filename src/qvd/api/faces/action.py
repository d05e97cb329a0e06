"""QVD's action face: ``POST /api``, ``/api/info``, ``/api/logout`` and the DI
upload and staging routes, with the JSON contract of reference §5.2 so that ``qa4``
and other existing scripts keep working.

Every answer is HTTP 200 with ``{status, message, …}``; ``status`` 0 is success.
Booleans go out as 0/1 (nested too), as QVD's Perl sent them: ``qa4`` cannot parse
``true``/``false``. ``/api`` and ``/api/`` are the same route (the original WAT posts
to ``/api/``; a redirect to another origin would break it).

The arguments come from the JSON body; as in QVD, whatever the body does not give is
taken from the query string (or a form), where ``filters``, ``arguments``, ``fields``,
``order_by`` and ``parameters`` are JSON-encoded. The original WAT sends every
argument that way, credentials included, in a body-less ``POST /api/?…``, so
credentials are accepted there: ``login``, ``password`` and ``tenant``, or ``sid``. They
never reach a log line, a metric label or an error message (see :mod:`qvd.api.faces.ws`'s
log filter and ``tests/security``). A session token may also come in the ``sid``
cookie or a header (``Authorization: Bearer``, ``X-QVD-Sid``).

``current_admin_setup`` answers its fields at the top level (and in ``rows[0]``) with
the session's ``sid``; with credentials it opens a session; without any it answers
3200, the status on which the WAT draws its login form.
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

from qvd.api.actions.auth import delete_session
from qvd.api.actions.core import ActionRequest, ActionResult
from qvd.api.actions.dispatch import CATALOGUE
from qvd.api.errors import ApiError, AuthError, InvalidRequest, Status
from qvd.api.faces import qvdshape
from qvd.api.shell.state import (
    SESSION_COOKIE,
    SESSION_HEADER,
    AppState,
    Credentials,
    app_state,
    check_cookie_use,
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
    "qvd_values",
    "read_body",
    "result_body",
    "router",
    "session_cookie",
]

router = APIRouter(include_in_schema=False)
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


def qvd_values(value: Any) -> Any:
    """``value`` with every boolean, however deep, as 0 or 1 (QVD's JSON). Dicts and
    lists are changed in place (an action's rows are its own), which keeps long lists
    cheap."""
    if type(value) is bool:
        return int(value)
    if type(value) is dict:
        for key, item in value.items():
            kind = type(item)
            if kind is bool:
                value[key] = int(item)
            elif kind is dict or kind is list:
                qvd_values(item)
            elif kind is tuple:
                value[key] = qvd_values(item)
    elif type(value) is list:
        for i, item in enumerate(value):
            kind = type(item)
            if kind is bool:
                value[i] = int(item)
            elif kind is dict or kind is list:
                qvd_values(item)
            elif kind is tuple:
                value[i] = qvd_values(item)
    elif isinstance(value, tuple):
        return [qvd_values(v) for v in value]
    return value


def result_body(result: ActionResult) -> dict[str, Any]:
    """The success body of an action on the ``/api`` face: ``{status, message, total,
    rows, …extra}``, booleans as 0/1. ``total`` is the number of rows a list matched,
    or the number of objects a change acted on."""
    if result.total is not None:
        total = result.total
    elif result.affected and not result.rows:
        total = len(result.affected)
    else:
        total = len(result.rows)
    body: dict[str, Any] = {
        "status": Status.OK,
        "message": OK_MESSAGE,
        "total": total,
        "rows": result.rows,
    }
    body.update(result.extra)
    qvd_values(body)
    return body


CORS = {"Access-Control-Allow-Origin": "*"}
"""As QVD: a WAT served from another origin may read the answers (it sends its session
in the URL; the cookie is SameSite=strict and never goes cross-site)."""


def _answer(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=CORS)


def _error(exc: ApiError) -> JSONResponse:
    return _answer(exc.body())


async def read_body(request: Request) -> dict[str, Any]:
    """The request's arguments: the JSON body's, then (for the keys it lacks) those of
    a form and of the query string, JSON-encoded keys decoded (as QVD read them)."""
    params: dict[str, Any] = dict(request.query_params)
    body: dict[str, Any] = {}
    if request.method != "GET":
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        else:
            raw = await request.body()
            try:
                data = json.loads(raw) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidRequest(f"the body is not JSON: {exc}", Status.BAD_JSON) from None
            if not isinstance(data, dict):
                raise InvalidRequest("the body must be a JSON object", Status.BAD_JSON)
            body = data
    extra = decode_json_keys({k: v for k, v in params.items() if k not in body})
    return {**extra, **body}


def decode_json_keys(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its :data:`JSON_KEYS` given as text decoded (in place); an empty
    one (``filters=``) is left out."""
    for key in JSON_KEYS:
        if isinstance(data.get(key), str):
            if not data[key].strip():
                del data[key]
                continue
            try:
                data[key] = json.loads(data[key])
            except ValueError:
                raise InvalidRequest(f"{key!r} is not JSON", Status.BAD_JSON) from None
    return data


def _int(data: dict[str, Any], key: str, default: int, least: int = 1) -> int:
    value = data.get(key, default)
    if value in (None, ""):
        return default
    try:
        if isinstance(value, bool | float):
            raise TypeError(value)
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{key!r} must be a whole number", Status.BAD_ARGUMENT) from None
    if not least <= number < 2**31:
        raise InvalidRequest(
            f"{key!r} must be between {least} and {2**31 - 1}, not {number}", Status.BAD_ARGUMENT
        )
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
    block = min(_int(data, "block", 10000, least=0), 10000)  # 0: no paging
    page = _int(data, "offset", 1)
    action = data.get("action") or ""
    return ActionRequest(
        action=action if isinstance(action, str) else "",
        filters=data.get("filters"),
        arguments=arguments,
        fields=list(fields),
        order_by=[(f, direction == "-desc") for f in order_fields],
        limit=block or None,
        offset=(page - 1) * block,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _token(request: Request, data: dict[str, Any]) -> str | None:
    """The request's ``sid``, else a token in the headers or the cookie."""
    sid = _text(data.get("sid"))
    return sid if sid else token_from_headers(request, check_cookie=False)


def _check_cookie(request: Request, data: dict[str, Any], creds: Credentials) -> None:
    """A session from the cookie alone may only run an action that changes something
    with the page's anti-CSRF token (``check_cookie_use``); reads need none."""
    if creds.token is None or _text(data.get("sid")):
        return
    if request.headers.get("authorization") or request.headers.get(SESSION_HEADER):
        return  # the token came in a header
    action = CATALOGUE.get(data.get("action") or "")
    if action is not None and action.mutating:
        check_cookie_use(request, creds.token)


def body_credentials(request: Request, data: dict[str, Any]) -> Credentials:
    params = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    source = params.get("source") if isinstance(params, dict) else None
    has_login = data.get("login") is not None or data.get("password") is not None
    return Credentials(
        token=None if has_login else _token(request, data),
        login=_text(data.get("login")) if has_login else None,
        password=_text(data.get("password")) if has_login else None,
        tenant=_text(data.get("tenant")),
        source=str(source)[:80] if source is not None else "API",
        address=client_address(request),
    )


SETUP = "current_admin_setup"


def _setup_body(state: AppState, body: dict[str, Any], token: str | None) -> None:
    """``current_admin_setup``'s fields at the top level too, as the WAT reads them,
    with ``block`` (the admin's page size), ``multitenant`` and ``sid``."""
    row = body["rows"][0] if body["rows"] else {}
    for key, value in row.items():
        body.setdefault(key, value)
    if "admin_block" in row:
        body.setdefault("block", row["admin_block"])
    body.setdefault("multitenant", int(state.config.get_bool("wat.multitenant")))
    if token:
        body["sid"] = token
        row["sid"] = token


def _run(state: AppState, creds: Credentials, data: dict[str, Any]) -> JSONResponse:
    req = parse_action(data)
    opening = creds.token is None and req.action in (SETUP, "")
    if req.action == "" and opening and creds.login is not None:
        req.action = SETUP  # logging in without an action: who one is
    setup = req.action == SETUP
    try:
        principal = state.authenticate(creds, new_session=opening)
    except AuthError as exc:
        if setup and exc.code == Status.NO_CREDENTIALS:  # the WAT's "please log in"
            raise AuthError(str(exc), Status.WRONG_CREDENTIALS) from None
        raise
    body = result_body(qvdshape.run(state.runner, principal, req))
    token = principal.session_token if opening else creds.token
    if setup:
        _setup_body(state, body, token)
    response = _answer(body)
    if opening and token:
        session_cookie(response, token, state.session_timeout)
    return response


@router.api_route("/api", methods=["GET", "POST"])
@router.api_route("/api/", methods=["GET", "POST"])
async def action_endpoint(request: Request) -> JSONResponse:
    try:
        data = await read_body(request)
        creds = body_credentials(request, data)
        _check_cookie(request, data, creds)
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
@router.api_route("/api/info/", methods=["GET", "POST"])
async def info_endpoint(request: Request) -> JSONResponse:
    return _answer(await run_in_threadpool(_info, app_state(request)))


def _logout(state: AppState, token: str | None) -> JSONResponse:
    if not token:
        return _error(AuthError("no session to log out of", Status.LOGOUT_ERROR))
    if not end_session(state, token):
        return _error(AuthError("the session does not exist or has expired", Status.LOGOUT_ERROR))
    response = _answer({"status": Status.OK, "message": "Logged out"})
    clear_session_cookie(response)
    return response


@router.api_route("/api/logout", methods=["GET", "POST"])
@router.api_route("/api/logout/", methods=["GET", "POST"])
async def logout_endpoint(request: Request) -> JSONResponse:
    try:
        data = await read_body(request)
    except ApiError as exc:
        return _error(exc)
    return await run_in_threadpool(_logout, app_state(request), _token(request, data))
