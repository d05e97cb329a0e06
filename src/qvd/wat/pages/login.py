"""Logging in and out, and the per-administrator settings every page offers: language
(saved to the administrator, ``myadmin_update``) and a superadmin's tenant choice."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from qvd.wat.i18n import LANGUAGES
from qvd.wat.port import WatError
from qvd.wat.web import (
    SESSION_COOKIE,
    TENANT_COOKIE,
    MutatingPage,
    port_of,
    render,
    safe_next,
    setup_cache,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
MAX_FIELD = 256


def _form(request: Request, *, error: str = "", login: str = "", tenant: str = "",
          status: int = 200) -> Response:  # fmt: skip
    port = port_of(request)
    return render(
        None, "login.html",
        {
            "error": error, "login": login, "tenant": tenant or ("*" if port.multitenant else ""),
            "multitenant": port.multitenant, "next": safe_next(request.query_params.get("next")),
            "expired": request.query_params.get("expired") == "1",
        },
        request=request, status=status,
    )  # fmt: skip


@router.get("/login")
def login_page(request: Request) -> Response:
    return _form(request)


@router.post("/login")
def log_in(
    request: Request,
    login: Annotated[str, Form(max_length=MAX_FIELD)],
    password: Annotated[str, Form(max_length=MAX_FIELD)],
    tenant: Annotated[str, Form(max_length=MAX_FIELD)] = "",
    language: Annotated[str, Form(max_length=8)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """Log in; the session token goes only into the HttpOnly cookie. A failed login
    answers 401 with the API's reason (rate limits included)."""
    port = port_of(request)
    address = request.client.host if request.client else None
    try:
        result = port.login(login=login, password=password, tenant=tenant or None, address=address)
    except WatError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        response = _form(request, error=exc.message, login=login, tenant=tenant, status=401)
        if headers:
            response.headers.update(headers)
        return response
    if language in LANGUAGES:
        with contextlib.suppress(WatError):  # the login stands; the language stays
            port.call(result.sid, "myadmin_update", arguments={"language": language},
                      address=address)  # fmt: skip
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE, result.sid, max_age=result.max_age, path="/", secure=True,
        httponly=True, samesite="strict",
    )  # fmt: skip
    return response


@router.post("/logout")
def log_out(request: Request, page: MutatingPage) -> Response:
    page.port.logout(page.sid)
    setup_cache.drop(page.sid)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    response.delete_cookie(TENANT_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/settings/language")
def set_language(
    page: MutatingPage,
    language: Annotated[str, Form(max_length=8)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """Remember the language for this administrator (in the database)."""
    if language in LANGUAGES:
        page.call("myadmin_update", arguments={"language": language})
        setup_cache.drop(page.sid)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/settings/tenant")
def set_tenant(
    page: MutatingPage,
    tenant: Annotated[str, Form(max_length=12)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """A superadmin's choice of tenant to show ("all" or an id), kept in a cookie."""
    response = RedirectResponse(safe_next(next), status_code=303)
    value = tenant if tenant == "all" or tenant.isdigit() else "all"
    if page.superadmin:
        response.set_cookie(
            TENANT_COOKIE, value, path="/", secure=True, httponly=True, samesite="strict"
        )
    return response
