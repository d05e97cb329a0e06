"""Virtual machines: the list (live state, mass actions), a VM's page (live facts;
start, stop, disconnect, block, delete, spy; properties; edit; state history from the
audit log) and the new-VM form. Everything goes through the API's actions; buttons show only
with their ACL, and a refusal shows the API's reason."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from qvd.wat.csp import FormTargetError, csp_allowing_form_to
from qvd.wat.lists import Column, ListView, MassAction, MassInput, list_router
from qvd.wat.lists.choices import USER_STATE_CHOICES, VM_STATE_CHOICES
from qvd.wat.pages.objectpages import (
    PROPERTY_INPUTS,
    ObjectKind,
    fetch_one,
    known_id,
    local_input,
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
HISTORY = 25  # audit entries shown on a VM's page

MASS = (
    MassAction("start", "Start", "vm_start", acl="vm.update.state"),
    MassAction("stop", "Stop", "vm_stop", acl="vm.update.state"),
    MassAction("disconnect", "Disconnect user", "vm_user_disconnect",
               acl="vm.update.disconnect-user"),
    MassAction("block", "Block", "vm_update", acl="vm.update.block", arguments={"blocked": True}),
    MassAction("unblock", "Unblock", "vm_update", acl="vm.update.block",
               arguments={"blocked": False}),
    MassAction("delete", "Delete", "vm_delete", acl="vm.delete.", confirm=True),
    MassAction("set_property", "Set a property", "vm_update", acl="vm.update.properties",
               inputs=PROPERTY_INPUTS, build=set_property_arguments),
    MassAction("move_tag", "Move to tag", "vm_update", acl="vm.update.di-tag",
               inputs=(MassInput("di_tag", "Tag", max_len=64),)),
)  # fmt: skip

VIEW = ListView(
    object="vm",
    path="/vms",
    title="Virtual machines",
    list_action="vm_get_list",
    columns=(
        Column("id", "Id", "number"),
        Column("name", "Name", link="/vms/{id}"),
        Column("user_name", "User", link="/users/{user_id}", acl="vm.see.user"),
        Column("osf_name", "OS flavour", link="/osfs/{osf_id}", acl="vm.see.osf"),
        Column("di_tag", "Tag", acl="vm.see.di-tag"),
        Column("state", "State", "state", acl="vm.see.state", choices=VM_STATE_CHOICES),
        Column(
            "user_state", "User state", "state", acl="vm.see.user-state", choices=USER_STATE_CHOICES
        ),
        Column("host_name", "Node", link="/hosts/{host_id}", acl="vm.see.host"),
        Column("blocked", "Blocked", "bool", acl="vm.see.block"),
        Column("tenant_name", "Tenant", acl="tenant.see-main."),
    ),
    search=("name",),
    detail="/vms/{id}",
    create="/vms/new",
    live=("state", "user_state", "host_name", "blocked"),
    mass=MASS,
)

FIELDS: dict[str, str | None] = {
    "id": "vm.see.id",
    "name": None,
    "description": "vm.see.description",
    "user_id": "vm.see.user",
    "user_name": "vm.see.user",
    "osf_id": "vm.see.osf",
    "osf_name": "vm.see.osf",
    "di_tag": "vm.see.di-tag",
    "blocked": "vm.see.block",
    "expiration_soft": "vm.see.expiration",
    "expiration_hard": "vm.see.expiration",
    "state": "vm.see.state",
    "vm_cmd": "vm.see.state",
    "last_error": "vm.see.state",
    "user_state": "vm.see.user-state",
    "host_id": "vm.see.host",
    "host_name": "vm.see.host",
    "di_id_in_use": "vm.see.di",
    "di_name_in_use": "vm.see.di",
    "di_version_in_use": "vm.see.di-version",
    "ip": "vm.see.ip",
    "mac": "vm.see.mac",
    "properties": "vm.see.properties",
    "creation_date": "vm.see.creation-date",
    "creation_admin_name": "vm.see.created-by",
    "tenant_name": "superadmin",
}
"""What a VM's page shows, with the ACL each needs."""

KIND = ObjectKind(
    "vm",
    "/vms",
    "Virtual machine",
    gone="There is no such virtual machine, or it is not yours to see.",
)

VERBS: dict[str, tuple[str, dict[str, Any]]] = {
    "start": ("vm_start", {}),
    "stop": ("vm_stop", {}),
    "disconnect": ("vm_user_disconnect", {}),
    "block": ("vm_update", {"blocked": True}),
    "unblock": ("vm_update", {"blocked": False}),
}
"""The buttons of a VM's page: ``POST /vms/<id>/<verb>`` runs the action."""

router = APIRouter(include_in_schema=False)
router.include_router(list_router(VIEW))

Text = Annotated[str, Form(max_length=MAX_TEXT)]


# ---- a new VM ----


def _options(page: Page, obj: str, filters: dict[str, Any]) -> list[tuple[int, str]]:
    """Ids and names of ``obj`` for a drop-down; a superadmin's also name the tenant."""
    try:
        if not page.superadmin:
            answer = page.call(f"{obj}_tiny_list", filters=filters or None)
            return [(int(r["id"]), str(r["name"])) for r in answer.rows]
        answer = page.call(
            f"{obj}_get_list",
            filters=filters or None,
            fields=["id", "name", "tenant_name"],
            order_by=[("name", False)],
        )
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return []
    return [(int(r["id"]), f"{r['name']} ({r['tenant_name']})") for r in answer.rows]


def _user_tenant(page: Page, user_id: str) -> int | None:
    """The tenant of the user a superadmin picked (to offer that tenant's OSFs)."""
    if not page.superadmin or not user_id.isdigit() or len(user_id) > 11:
        return None
    try:
        row = fetch_one(page, "user_get_details", int(user_id), ["id", "tenant_id"])
    except WatError:
        return None
    return int(row["tenant_id"]) if row and row.get("tenant_id") is not None else None


def _new_form(page: Page, typed: dict[str, str], status: int = 200) -> Response:
    osf_filter = dict(page.tenant_filter())
    tenant = _user_tenant(page, typed.get("user_id", ""))
    if tenant is not None:
        osf_filter["tenant_id"] = tenant
    context = {
        "typed": typed,
        "users": _options(page, "user", page.tenant_filter()),
        "osfs": _options(page, "osf", osf_filter),
    }
    return render(page, "vms/new.html", context, status=status)


@router.get("/vms/new")
def new_vm(page: ReadPage, user_id: str = "") -> Response:
    return _new_form(page, {"user_id": user_id[:12], "di_tag": "default"})


def _id_arg(value: str) -> int | str:
    """A picked id as a number; anything else goes to the API as typed (it says why)."""
    return int(value) if value.isdigit() and len(value) < 12 else value


@router.post("/vms/new")
def create_vm(
    page: MutatingPage,
    name: Text = "",
    user_id: Text = "",
    osf_id: Text = "",
    di_tag: Text = "",
    description: Text = "",
) -> Response:
    typed = {"name": name, "user_id": user_id, "osf_id": osf_id, "di_tag": di_tag,
             "description": description}  # fmt: skip
    arguments: dict[str, Any] = {"name": name}
    if user_id:
        arguments["user_id"] = _id_arg(user_id)
    if osf_id:
        arguments["osf_id"] = _id_arg(osf_id)
    if di_tag.strip() and (di_tag.strip() != "default" or page.can("vm.create.di-tag")):
        arguments["di_tag"] = di_tag
    if description.strip():
        arguments["description"] = description
    try:
        answer = page.call("vm_create", arguments=arguments)
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return _new_form(page, typed, status=refusal_status(exc))
    return RedirectResponse(f"/vms/{answer.rows[0]['id']}?done=created", status_code=303)


# ---- a VM's page ----


def _tags(page: Page, vm: dict[str, Any]) -> list[str]:
    """The tags of the VM's OSF (its own first, even if gone from the OSF)."""
    names: list[str] = []
    if vm.get("osf_id") is not None:
        try:
            answer = page.call("tag_tiny_list", filters={"osf_id": vm["osf_id"]})
            names = sorted({str(r["name"]) for r in answer.rows})
        except WatError:
            names = []
    current = vm.get("di_tag")
    if current and current not in names:
        names.insert(0, str(current))
    return names


def _history(page: Page, vm_id: int) -> tuple[list[dict[str, Any]], str]:
    """The newest audit entries of this VM, and the API's reason when it refused."""
    if not page.can("vm.see.log") and not page.can("log.see-main."):
        return [], ""
    fields = ["id", "action", "time", "status"]
    if page.can("log.see.administrator"):
        fields.append("admin_name")
    try:
        answer = page.call(
            "log_get_list",
            filters={"qvd_object": "vm", "object_id": vm_id},
            fields=fields,
            order_by=[("time", True), ("id", True)],
            limit=HISTORY,
        )
    except WatError as exc:
        return [], refusal_text(exc)
    return answer.rows, ""


def _detail(page: Page, vm_id: int, *, typed: dict[str, str] | None = None,
            status: int = 200) -> Response:  # fmt: skip
    try:
        vm = fetch_one(page, "vm_get_details", vm_id, visible_fields(page, FIELDS))
    except WatError as exc:
        return missing(page, KIND, vm_id, exc)
    if vm is None:
        return missing(page, KIND, vm_id)
    vm.setdefault("id", vm_id)
    history, history_error = _history(page, vm_id)
    form = {
        "name": vm.get("name") or "",
        "description": vm.get("description") or "",
        "di_tag": vm.get("di_tag") or "",
        "expiration_soft": local_input(vm.get("expiration_soft")),
        "expiration_hard": local_input(vm.get("expiration_hard")),
        **(typed or {}),
    }
    context = {
        "vm": vm,
        "form": form,
        "tags": _tags(page, vm) if page.can("vm.update.di-tag") else [],
        "history": history,
        "history_error": history_error,
        "shown_time": shown_time,
        **properties_context(page, KIND, vm_id, vm),
    }
    return render(page, "vms/detail.html", context, status=status)


@router.get("/vms/{vm_id:int}")
def vm_page(vm_id: int, page: ReadPage) -> Response:
    show_done(page)
    return _detail(page, vm_id)


EDITABLE = ("name", "description", "di_tag", "expiration_soft", "expiration_hard")
"""The edit form's fields (each on the form only with its ACL, ``vm.update.*``)."""


def _changes(vm: dict[str, Any], typed: dict[str, str]) -> dict[str, Any]:
    """The arguments of ``vm_update`` for what the admin changed: a field the form did
    not carry, or left as it was, is not sent (each needs its own ACL)."""
    out: dict[str, Any] = {}
    for key, value in typed.items():
        if key.startswith("expiration_"):
            if value != local_input(vm.get(key)):
                out[key] = value or None
        elif key == "description":
            if value != (vm.get("description") or ""):
                out[key] = value or None
        elif value.strip() != (vm.get(key) or ""):
            out[key] = value
    return out


@router.post("/vms/{vm_id:int}")
async def edit_vm(vm_id: int, request: Request, page: MutatingPage) -> Response:
    return await run_in_threadpool(_edit, page, vm_id, await typed_fields(request, EDITABLE))


def _edit(page: Page, vm_id: int, typed: dict[str, str]) -> Response:
    try:
        vm = fetch_one(page, "vm_get_details", vm_id, visible_fields(page, FIELDS))
    except WatError as exc:
        return missing(page, KIND, vm_id, exc)
    if vm is None:
        return missing(page, KIND, vm_id)
    arguments = _changes(vm, typed)
    if arguments:
        try:
            page.call("vm_update", filters={"id": vm_id}, arguments=arguments)
        except WatError as exc:
            page.flash("error", refusal_text(exc))
            return _detail(page, vm_id, typed=typed, status=refusal_status(exc))
    return RedirectResponse(f"/vms/{vm_id}?done=saved", status_code=303)


def _refused(page: Page, vm_id: int, exc: WatError) -> Response:
    """The object's page again with the API's reason (a refused button or property)."""
    page.flash("error", refusal_text(exc))
    return _detail(page, vm_id, status=refusal_status(exc))


router.include_router(properties_router(KIND, _refused))


@router.post("/vms/{vm_id:int}/delete")
def delete_vm(vm_id: int, page: MutatingPage) -> Response:
    return run_button(page, KIND, vm_id, "vm_delete", None, None, _refused)


@router.post("/vms/{vm_id:int}/spy")
def spy_vm(
    vm_id: int, page: MutatingPage, interactive: Annotated[str, Form(max_length=8)] = ""
) -> Response:
    """Ask the API for a spy ticket of this VM and answer the launcher page: a form
    that posts the ticket to the user portal of the VM's node (``wat.js`` submits it;
    its button does without script). Only this page may post a form to that portal."""
    if not known_id(vm_id):
        return missing(page, KIND, vm_id)
    arguments = {"interactive": True} if interactive == "1" else None
    try:
        answer = page.call("vm_spy", filters={"id": vm_id}, arguments=arguments)
    except WatError as exc:
        if exc.status == 1300:  # nothing selected: absent or out of scope
            return missing(page, KIND, vm_id)
        return _refused(page, vm_id, exc)
    row = answer.rows[0]
    try:
        policy = csp_allowing_form_to(str(row["url"]))
    except FormTargetError as exc:
        page.flash("error", f"{page.t('The user portal cannot be reached:')} {exc}")
        return _detail(page, vm_id, status=502)
    context = {"vm_id": vm_id, "url": row["url"], "ticket": row["ticket"],
               "interactive": arguments is not None}  # fmt: skip
    return render(page, "vms/spy.html", context, headers={"Content-Security-Policy": policy})


@router.post("/vms/{vm_id:int}/{verb}")
def vm_command(vm_id: int, verb: str, page: MutatingPage) -> Response:
    if verb not in VERBS:
        return missing(page, KIND, vm_id)
    action, arguments = VERBS[verb]
    return run_button(page, KIND, vm_id, action, arguments, verb, _refused)


router.include_router(reloaded_buttons_router(KIND))
