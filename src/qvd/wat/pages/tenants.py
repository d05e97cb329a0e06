"""Tenants (superadmins only): the list (block, unblock and delete several at once), a
tenant's page (facts, edit form, its WAT settings, how many users, VMs and
administrators it holds, a link to its configuration tokens) and a new tenant's form.

Tenant administrators never hold ``tenant.*`` ACLs: every page here answers them 403
with a clear page before asking the API (which would refuse anyway). A tenant that does
not exist, or that the API does not show, answers 404.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from qvd.wat.lists import Column, ListView, MassAction, list_router
from qvd.wat.pages.objectpages import (
    ObjectKind,
    fetch_one,
    history,
    refusal_page,
    refusal_status,
    refusal_text,
    reloaded_buttons_router,
)
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = ["LANGUAGE_CHOICES", "VIEW", "router"]

VIEW = ListView(
    object="tenant",
    path="/tenants",
    title="Tenants",
    list_action="tenant_get_list",
    columns=(
        Column("id", "Id", "number", acl="tenant.see.id"),
        Column("name", "Name", link="/tenants/{id}"),
        Column("language", "Language", acl="tenant.see.language"),
        Column("block", "Page size", "number", acl="tenant.see.blocksize"),
        Column("blocked", "Blocked", "bool", acl="tenant.see.block"),
    ),
    search=("name",),
    detail="/tenants/{id}",
    create="/tenants/new",
    mass=(
        MassAction(
            "block",
            "Block",
            "tenant_update",
            acl="tenant.update.block",
            arguments={"blocked": True},
        ),
        MassAction(
            "unblock",
            "Unblock",
            "tenant_update",
            acl="tenant.update.block",
            arguments={"blocked": False},
        ),
        MassAction("delete", "Delete", "tenant_delete", acl="tenant.delete.", confirm=True),
    ),
    default_order=(("name", False),),
    acl="tenant.see-main.",
)

LANGUAGE_CHOICES = (
    ("auto", "Automatic (the browser's)"),
    ("default", "Default"),
    ("en", "English"),
    ("es", "Español"),
)
"""The languages a tenant (or its WAT settings) may have (the API's list)."""

MAX_NAME = 80
MAX_DESCRIPTION = 32768
COUNTED = (
    ("user_get_list", "Users", "/users"),
    ("vm_get_list", "Virtual machines", "/vms"),
    ("administrator_get_list", "Administrators", "/administrators"),
)

KIND = ObjectKind("tenant", "/tenants", "Tenant")
router = APIRouter(include_in_schema=False)
_lists = list_router(VIEW)


def _forbidden(page: Page) -> Response:
    return refusal_page(
        page, page.t("Tenants"),
        page.t("Only superadministrators manage tenants."), 403,
    )  # fmt: skip


def _missing(page: Page, tenant_id: int) -> Response:
    return refusal_page(
        page, page.t("No such tenant"),
        page.t("There is no tenant with id") + f" {tenant_id}.", 404,
        back="/tenants", back_label="Back to the list",
    )  # fmt: skip


def _list_endpoint() -> Any:
    for route in _lists.routes:
        if getattr(route, "path", None) == VIEW.path and "GET" in getattr(route, "methods", ()):
            return getattr(route, "endpoint", None)
    raise RuntimeError("the list router has no GET route for /tenants")


_show_list = _list_endpoint()


@router.get(VIEW.path)
def tenants(request: Request, page: ReadPage) -> Response:
    """The list, for superadmins only (others get a 403 page, not the API's refusal)."""
    if not page.superadmin:
        return _forbidden(page)
    accepted = inspect.signature(_show_list).parameters
    # tenants have no tenant: the superadmin's choice of tenant to show does not apply
    values: dict[str, Any] = {"request": request, "page": replace(page, tenant_choice=None)}
    result: Response = _show_list(**{k: v for k, v in values.items() if k in accepted})
    return result


# ---- one tenant ---------------------------------------------------------------------------
def _tenant(page: Page, tenant_id: int) -> dict[str, Any] | None:
    try:
        return fetch_one(page, VIEW.list_action, tenant_id)
    except WatError as exc:
        if refusal_status(exc) in (403, 404):
            return None
        raise


def _counts(page: Page, tenant_id: int) -> list[tuple[str, int | None, str]]:
    out: list[tuple[str, int | None, str]] = []
    for action, label, path in COUNTED:
        try:
            answer = page.call(action, filters={"tenant_id": tenant_id}, fields=["id"], limit=1)
            out.append((label, answer.total, path))
        except WatError:
            out.append((label, None, path))
    return out


def _wat_settings(page: Page, tenant_id: int) -> dict[str, Any] | None:
    if not page.can("config.wat."):
        return None
    try:
        answer = page.call("config_wat_get_details", filters={"tenant_id": tenant_id}, limit=1)
    except WatError:
        return None
    return answer.rows[0] if answer.rows else None


def _detail(
    page: Page,
    tenant: Mapping[str, Any],
    *,
    form: Mapping[str, Any] | None = None,
    wat_form: Mapping[str, Any] | None = None,
    status: int = 200,
) -> Response:
    tenant_id = int(tenant["id"])
    settings = _wat_settings(page, tenant_id)
    return render(
        page, "tenants/detail.html",
        {
            "tenant": tenant, "form": form or tenant, "counts": _counts(page, tenant_id),
            "settings": settings, "wat_form": wat_form or settings or {},
            "languages": _languages(page), "history": history(page, KIND, tenant_id),
            "can_edit": any(a.startswith("tenant.update.") for a in page.acls),
            "can_delete": page.can("tenant.delete."),
        },
        status=status,
    )  # fmt: skip


@router.get("/tenants/new")
def new_tenant(page: ReadPage) -> Response:
    if not page.superadmin:
        return _forbidden(page)
    return _new_form(page, {"name": "", "language": "auto", "block": 10, "blocked": False,
                           "description": ""})  # fmt: skip


def _new_form(page: Page, form: Mapping[str, Any], status: int = 200) -> Response:
    return render(page, "tenants/new.html", {"form": form, "languages": _languages(page)},
                  status=status)  # fmt: skip


def _languages(page: Page) -> list[tuple[str, str]]:
    return [(value, page.t(label)) for value, label in LANGUAGE_CHOICES]


def _block_value(raw: str) -> int | str:
    """The page size as typed: an int when it is one (the API checks its range)."""
    text = raw.strip()
    return int(text) if text.isdigit() and len(text) < 7 else text


@router.post("/tenants/new")
def create_tenant(
    page: MutatingPage,
    name: Annotated[str, Form(max_length=MAX_NAME * 4)] = "",
    language: Annotated[str, Form(max_length=16)] = "auto",
    block: Annotated[str, Form(max_length=16)] = "10",
    blocked: Annotated[str, Form(max_length=4)] = "",
    description: Annotated[str, Form(max_length=MAX_DESCRIPTION)] = "",
) -> Response:
    form = {"name": name, "language": language, "block": block, "blocked": bool(blocked),
            "description": description}  # fmt: skip
    if not page.superadmin:
        return _forbidden(page)
    arguments: dict[str, Any] = {
        "name": name, "language": language, "block": _block_value(block),
        "blocked": bool(blocked),
    }  # fmt: skip
    if description.strip():
        arguments["description"] = description
    try:
        answer = page.call("tenant_create", arguments=arguments)
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return _new_form(page, form, status=refusal_status(exc))
    new_id = answer.rows[0]["id"] if answer.rows else None
    target = f"/tenants/{int(new_id)}" if isinstance(new_id, int) else "/tenants"
    return RedirectResponse(target, status_code=303)


@router.get("/tenants/{tenant_id:int}")
def tenant_page(page: ReadPage, tenant_id: int) -> Response:
    if not page.superadmin:
        return _forbidden(page)
    tenant = _tenant(page, tenant_id)
    if tenant is None:
        return _missing(page, tenant_id)
    return _detail(page, tenant)


@router.post("/tenants/{tenant_id:int}")
def update_tenant(
    page: MutatingPage,
    tenant_id: int,
    name: Annotated[str, Form(max_length=MAX_NAME * 4)] = "",
    language: Annotated[str, Form(max_length=16)] = "",
    block: Annotated[str, Form(max_length=16)] = "",
    blocked: Annotated[str, Form(max_length=4)] = "",
    description: Annotated[str, Form(max_length=MAX_DESCRIPTION)] = "",
) -> Response:
    if not page.superadmin:
        return _forbidden(page)
    tenant = _tenant(page, tenant_id)
    if tenant is None:
        return _missing(page, tenant_id)
    arguments: dict[str, Any] = {}  # only what changed: each field has its own ACL
    if bool(blocked) != bool(tenant.get("blocked")):
        arguments["blocked"] = bool(blocked)
    if name != tenant.get("name"):
        arguments["name"] = name
    if language and language != tenant.get("language"):
        arguments["language"] = language
    if block and _block_value(block) != tenant.get("block"):
        arguments["block"] = _block_value(block)
    if description != (tenant.get("description") or ""):
        arguments["description"] = description or None
    try:
        if arguments:
            page.call("tenant_update", filters={"id": tenant_id}, arguments=arguments)
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        form = {**tenant, "name": name, "language": language, "block": block,
                "blocked": bool(blocked), "description": description}  # fmt: skip
        return _detail(page, tenant, form=form, status=refusal_status(exc))
    return RedirectResponse(f"/tenants/{tenant_id}", status_code=303)


@router.post("/tenants/{tenant_id:int}/settings")
def update_wat_settings(
    page: MutatingPage,
    tenant_id: int,
    language: Annotated[str, Form(max_length=16)] = "",
    block: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """The tenant's WAT settings (``config_wat_update``): language and page size."""
    if not page.superadmin:
        return _forbidden(page)
    tenant = _tenant(page, tenant_id)
    if tenant is None:
        return _missing(page, tenant_id)
    arguments: dict[str, Any] = {"tenant_id": tenant_id}
    if language:
        arguments["language"] = language
    if block:
        arguments["block"] = _block_value(block)
    try:
        page.call("config_wat_update", arguments=arguments)
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return _detail(page, tenant, wat_form={"language": language, "block": block},
                       status=refusal_status(exc))  # fmt: skip
    return RedirectResponse(f"/tenants/{tenant_id}", status_code=303)


@router.post("/tenants/{tenant_id:int}/delete")
def delete_tenant(page: MutatingPage, tenant_id: int) -> Response:
    if not page.superadmin:
        return _forbidden(page)
    tenant = _tenant(page, tenant_id)
    if tenant is None:
        return _missing(page, tenant_id)
    try:
        page.call("tenant_delete", filters={"id": tenant_id})
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return _detail(page, tenant, status=refusal_status(exc))
    return RedirectResponse("/tenants", status_code=303)


router.include_router(_lists)  # the list engine's other routes (mass actions, export)


router.include_router(reloaded_buttons_router(KIND))
