"""Users: the list (mass block, unblock, delete, set a property), a user's page (facts,
their VMs with live state, properties, edit, delete) and the new-user form."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from qvd.wat.lists import Column, ListView, MassAction, list_router
from qvd.wat.pages.objectpages import (
    PROPERTY_INPUTS,
    ObjectKind,
    fetch_one,
    missing,
    properties_context,
    properties_router,
    refusal_status,
    refusal_text,
    reloaded_buttons_router,
    run_button,
    set_property_arguments,
    show_done,
    shown_time,
    typed_fields,
    visible_fields,
)
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = ["MASS", "VIEW", "router"]

MAX_TEXT = 32768
MAX_VMS = 100  # VMs listed on a user's page

MASS = (
    MassAction("block", "Block", "user_update", acl="user.update.block",
               arguments={"blocked": True}),
    MassAction("unblock", "Unblock", "user_update", acl="user.update.block",
               arguments={"blocked": False}),
    MassAction("delete", "Delete", "user_delete", acl="user.delete.", confirm=True),
    MassAction("set_property", "Set a property", "user_update", acl="user.update.properties",
               inputs=PROPERTY_INPUTS, build=set_property_arguments),
)  # fmt: skip

VIEW = ListView(
    object="user",
    path="/users",
    title="Users",
    list_action="user_get_list",
    columns=(
        Column("id", "Id", "number", acl="user.see.id"),
        Column("name", "Login", link="/users/{id}"),
        Column("blocked", "Blocked", "bool", acl="user.see.block"),
        Column("number_of_vms", "VMs", "number", acl="user.see.vm-list"),
        Column("number_of_vms_connected", "Connected VMs", "number", acl="user.see.vms-info"),
        Column("tenant_name", "Tenant", acl="tenant.see-main."),
    ),
    search=("name",),
    detail="/users/{id}",
    create="/users/new",
    mass=MASS,
)

FIELDS: dict[str, str | None] = {
    "id": "user.see.id",
    "name": None,
    "description": "user.see.description",
    "blocked": "user.see.block",
    "number_of_vms": "user.see.vm-list",
    "number_of_vms_connected": "user.see.vms-info",
    "properties": "user.see.properties",
    "creation_date": "user.see.creation-date",
    "creation_admin_name": "user.see.created-by",
    "tenant_id": "superadmin",
    "tenant_name": "superadmin",
}
"""What a user's page shows, with the ACL each needs."""

VM_FIELDS: dict[str, str | None] = {
    "id": None,
    "name": None,
    "state": "vm.see.state",
    "user_state": "vm.see.user-state",
    "host_name": "vm.see.host",
    "blocked": "vm.see.block",
}
"""The columns of the user's VM list (all live but the name)."""

KIND = ObjectKind(
    "user", "/users", "User", gone="There is no such user, or it is not yours to see."
)

router = APIRouter(include_in_schema=False)
router.include_router(list_router(VIEW))

Text = Annotated[str, Form(max_length=MAX_TEXT)]


# ---- a new user ----


def _tenants(page: Page) -> list[tuple[int, str]]:
    if not page.superadmin:
        return []
    try:
        answer = page.call("tenant_tiny_list")
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return []
    return [(int(r["id"]), str(r["name"])) for r in answer.rows if int(r["id"]) > 0]


def _new_form(page: Page, typed: dict[str, str], status: int = 200) -> Response:
    context = {"typed": typed, "tenant_options": _tenants(page)}
    return render(page, "users/new.html", context, status=status)


@router.get("/users/new")
def new_user(page: ReadPage) -> Response:
    chosen = "" if page.tenant_choice is None else str(page.tenant_choice)
    return _new_form(page, {"tenant_id": chosen})


@router.post("/users/new")
def create_user(
    page: MutatingPage,
    name: Text = "",
    password: Text = "",
    tenant_id: Text = "",
    description: Text = "",
) -> Response:
    typed = {"name": name, "tenant_id": tenant_id, "description": description}
    arguments: dict[str, Any] = {"name": name, "password": password}
    if tenant_id:
        arguments["tenant_id"] = int(tenant_id) if tenant_id.isdigit() else tenant_id
    if description.strip():
        arguments["description"] = description
    try:
        answer = page.call("user_create", arguments=arguments)
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return _new_form(page, typed, status=refusal_status(exc))  # the password is not kept
    return RedirectResponse(f"/users/{answer.rows[0]['id']}?done=created", status_code=303)


# ---- a user's page ----


def _vms(page: Page, user_id: int) -> tuple[list[dict[str, Any]], list[str], str]:
    """The user's VMs, the fields shown, and the API's reason when it refused."""
    if not page.can("user.see.vm-list"):
        return [], [], ""
    fields = visible_fields(page, VM_FIELDS)
    try:
        answer = page.call("vm_get_list", filters={"user_id": user_id}, fields=fields,
                           order_by=[("name", False)], limit=MAX_VMS)  # fmt: skip
    except WatError as exc:
        return [], fields, refusal_text(exc)
    return answer.rows, fields, ""


def _detail(page: Page, user_id: int, *, typed: dict[str, str] | None = None,
            status: int = 200) -> Response:  # fmt: skip
    try:
        user = fetch_one(page, "user_get_details", user_id, visible_fields(page, FIELDS))
    except WatError as exc:
        return missing(page, KIND, user_id, exc)
    if user is None:
        return missing(page, KIND, user_id)
    user.setdefault("id", user_id)
    vms, vm_fields, vms_error = _vms(page, user_id)
    form = {"name": user.get("name") or "", "description": user.get("description") or "",
            **(typed or {})}  # fmt: skip
    context = {
        "user": user,
        "form": form,
        "vms": vms,
        "vm_fields": vm_fields,
        "vms_error": vms_error,
        "shown_time": shown_time,
        **properties_context(page, KIND, user_id, user),
    }
    return render(page, "users/detail.html", context, status=status)


@router.get("/users/{user_id:int}")
def user_page(user_id: int, page: ReadPage) -> Response:
    show_done(page)
    return _detail(page, user_id)


EDITABLE = ("description", "password", "blocked", "blocked_shown")
"""The edit form's fields (each on the form only with its ACL, ``user.update.*``;
``blocked_shown`` says the form carried the checkbox, which is absent when unticked)."""


@router.post("/users/{user_id:int}")
async def edit_user(user_id: int, request: Request, page: MutatingPage) -> Response:
    return await run_in_threadpool(_edit, page, user_id, await typed_fields(request, EDITABLE))


def _edit(page: Page, user_id: int, typed: dict[str, str]) -> Response:
    try:
        user = fetch_one(page, "user_get_details", user_id, visible_fields(page, FIELDS))
    except WatError as exc:
        return missing(page, KIND, user_id, exc)
    if user is None:
        return missing(page, KIND, user_id)
    arguments: dict[str, Any] = {}
    description = typed.get("description")
    if description is not None and description != (user.get("description") or ""):
        arguments["description"] = description or None
    if typed.get("password"):
        arguments["password"] = typed["password"]
    blocked = bool(typed.get("blocked"))
    if "blocked_shown" in typed and blocked != bool(user.get("blocked")):
        arguments["blocked"] = blocked
    if arguments:
        try:
            page.call("user_update", filters={"id": user_id}, arguments=arguments)
        except WatError as exc:
            page.flash("error", refusal_text(exc))
            kept = {"description": description or ""}  # the password is never sent back
            return _detail(page, user_id, typed=kept, status=refusal_status(exc))
    return RedirectResponse(f"/users/{user_id}?done=saved", status_code=303)


def _refused(page: Page, user_id: int, exc: WatError) -> Response:
    """The object's page again with the API's reason (a refused button or property)."""
    page.flash("error", refusal_text(exc))
    return _detail(page, user_id, status=refusal_status(exc))


router.include_router(properties_router(KIND, _refused))


@router.post("/users/{user_id:int}/delete")
def delete_user(user_id: int, page: MutatingPage) -> Response:
    return run_button(page, KIND, user_id, "user_delete", None, None, _refused)


router.include_router(reloaded_buttons_router(KIND))
