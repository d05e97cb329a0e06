"""``/api/v1/sessions``: log in (a session token in the body and a Secure HttpOnly
cookie), see who is logged in, log out. Tokens never travel in URLs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from qvd.api.actions.core import ActionRequest
from qvd.api.errors import AuthError, Status
from qvd.api.faces.action import clear_session_cookie, end_session, session_cookie
from qvd.api.faces.rest import ERRORS, SECURITY, Auth, execute
from qvd.api.faces.schemas import Login, SessionInfo
from qvd.api.shell.state import Credentials, app_state, client_address

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"], responses=ERRORS)


@router.post("", status_code=201, response_model=SessionInfo, summary="Log in")
async def log_in(request: Request, body: Login) -> JSONResponse:
    state = app_state(request)
    creds = Credentials(
        login=body.login, password=body.password, tenant=body.tenant, source="REST",
        address=client_address(request),
    )  # fmt: skip
    principal = await run_in_threadpool(state.authenticate, creds, new_session=True)
    assert principal.session_token is not None
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=state.session_timeout)
    info = SessionInfo(
        sid=principal.session_token, expires=expires, admin_id=principal.admin_id,
        tenant_id=principal.tenant_id,
    )  # fmt: skip
    response = JSONResponse(info.model_dump(mode="json"), status_code=201)
    session_cookie(response, principal.session_token, state.session_timeout)
    return response


@router.get("/current", dependencies=SECURITY, summary="Who is logged in, with which ACLs")
def current(request: Request, principal: Auth) -> dict[str, Any]:
    return execute(request, principal, ActionRequest(action="current_admin_setup")).rows[0]


@router.delete("/current", status_code=204, dependencies=SECURITY, summary="Log out")
def log_out(request: Request, principal: Auth) -> Response:
    token = principal.principal().session_token
    if token is None:
        raise AuthError("no session to log out of", Status.LOGOUT_ERROR)
    end_session(app_state(request), token)
    response = Response(status_code=204)
    clear_session_cookie(response)
    return response
