"""OS flavours: list, details (their DIs, where their tags point, their VMs,
properties), create, edit and delete.

An OSF of another tenant is, to a tenant administrator, an OSF that does not exist
(404): the API's tenant scope decides, the WAT only asks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import RedirectResponse, Response

from qvd.wat.lists import Column, ListView, MassAction, MassInput, list_router
from qvd.wat.pages.infra import (
    MAX_NAME,
    MAX_TEXT,
    Refused,
    changed,
    may_create,
    number,
)
from qvd.wat.pages.nav import tenants
from qvd.wat.pages.objectpages import (
    ObjectKind,
    fetch_one,
    history,
    missing,
    properties_context,
    properties_router,
    refusal_status,
    refusal_text,
    refused_page,
    run_button,
    show_done,
)
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = ["KIND", "VIEW", "router"]

KIND = ObjectKind("osf", "/osfs", "OS flavour")
VM_ROWS = 20  # an OSF page lists its first VMs; the VM list filters the rest
DI_ROWS = 100
TAG_ORDER = {"default": 0, "head": 1}

VIEW = ListView(
    object="osf",
    path="/osfs",
    title="OS flavours",
    list_action="osf_get_list",
    columns=(
        Column("id", "Id", "number", acl="osf.see.id"),
        Column("name", "Name", link="/osfs/{id}"),
        Column("memory", "Memory (MB)", "number", acl="osf.see.memory"),
        Column("user_storage", "User storage (MB)", "number", acl="osf.see.user-storage"),
        Column("overlay", "Overlay", "bool", acl="osf.see.overlay"),
        Column("number_of_dis", "Disk images", "number", acl="osf.see.di-list"),
        Column("number_of_vms", "Virtual machines", "number", acl="osf.see.vm-list"),
        Column("tenant_name", "Tenant", acl="tenant.see-main."),
    ),
    search=("name",),
    detail="/osfs/{id}",
    create="/osfs/new",
    live=("number_of_dis", "number_of_vms"),
    mass=(
        MassAction("delete", "Delete", "osf_delete", "osf.delete.", confirm=True),
        MassAction("set_property", "Set property", "osf_update", "osf.update.properties",
                   inputs=(MassInput("key", "Key", max_len=1024), MassInput("value", "Value")),
                   build=lambda v: {"__properties_changes__": {"set": {v["key"]: v["value"]}}}),
    ),
    acl="osf.see-main.",
)  # fmt: skip

router = APIRouter(include_in_schema=False)
router.include_router(list_router(VIEW))


def _refused(page: Page, osf_id: int, exc: WatError) -> Response:
    return _show(page, osf_id, error=refusal_text(exc), status=refusal_status(exc))


router.include_router(properties_router(KIND, _refused))

_FORM_FIELDS = ("name", "memory", "user_storage", "overlay", "description")


def _tenant_options(page: Page) -> list[tuple[int, str]]:
    return [(int(t["id"]), str(t["name"])) for t in tenants(page)]


def _new_form(
    page: Page, values: dict[str, Any], *, error: str = "", status: int = 200
) -> Response:
    context = {
        "values": values,
        "error": error,
        "tenant_options": _tenant_options(page) if page.superadmin else [],
    }
    return render(page, "osfs/new.html", context, status=status)


@router.get("/osfs/new")
def new_osf(page: ReadPage) -> Response:
    if (refusal := may_create(page, KIND)) is not None:
        return refusal
    values = {"name": "", "memory": "", "user_storage": "", "overlay": True, "description": "",
              "tenant_id": page.tenant_choice}  # fmt: skip
    return _new_form(page, values)


def _typed(page: Page, values: dict[str, Any]) -> dict[str, Any]:
    """What the form says, as the API's arguments (numbers checked here)."""
    out: dict[str, Any] = {"name": values["name"], "overlay": values["overlay"]}
    memory = number(page, "Memory (MB)", values["memory"], minimum=1)
    if memory is not None:
        out["memory"] = memory
    storage = number(page, "User storage (MB)", values["user_storage"], minimum=0)
    if storage is not None:
        out["user_storage"] = storage
    out["description"] = values["description"] or None
    return out


@router.post("/osfs/new")
def create_osf(
    page: MutatingPage,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    memory: Annotated[str, Form(max_length=20)] = "",
    user_storage: Annotated[str, Form(max_length=20)] = "",
    overlay: Annotated[str, Form(max_length=8)] = "",
    description: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    tenant_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    values: dict[str, Any] = {
        "name": name.strip(), "memory": memory, "user_storage": user_storage,
        "overlay": bool(overlay), "description": description,
        "tenant_id": int(tenant_id) if tenant_id.isdigit() else None,
    }  # fmt: skip
    try:
        arguments = _typed(page, values)
    except Refused as exc:
        return _new_form(page, values, error=exc.message, status=400)
    if arguments["description"] is None:
        del arguments["description"]
    if page.superadmin and values["tenant_id"] is not None:
        arguments["tenant_id"] = values["tenant_id"]
    try:
        answer = page.call("osf_create", arguments=arguments)
    except WatError as exc:
        return _new_form(page, values, error=refusal_text(exc), status=refusal_status(exc))
    return RedirectResponse(f"/osfs/{answer.rows[0]['id']}?done=created", status_code=303)


def _dis(page: Page, osf_id: int) -> tuple[list[dict[str, Any]], str]:
    if not page.can("osf.see.di-list"):
        return [], ""
    wanted = {"version": "di.see.version", "tags": "di.see.tags", "blocked": "di.see.block"}
    fields = ["id", "disk_image", "state", *(f for f, acl in wanted.items() if page.can(acl))]
    try:
        answer = page.call("di_get_list", filters={"osf_id": osf_id}, fields=fields,
                           order_by=[("id", True)], limit=DI_ROWS)  # fmt: skip
    except WatError as exc:
        return [], refusal_text(exc)
    return answer.rows, ""


def _tags(page: Page, osf_id: int, dis: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Every tag of the OSF with the DI it points at: ``default`` and ``head`` first,
    then custom tags, then the fixed version tags."""
    try:
        answer = page.call("tag_get_list", filters={"osf_id": osf_id},
                           fields=["id", "tag", "di_id", "fixed"])  # fmt: skip
    except WatError as exc:
        return [], refusal_text(exc)
    by_id = {d["id"]: d for d in dis}
    rows = [{**t, "di": by_id.get(t["di_id"])} for t in answer.rows]
    rows.sort(key=lambda t: (TAG_ORDER.get(t["tag"], 3 if t["fixed"] else 2), str(t["tag"])))
    return rows, ""


def _vms(page: Page, osf_id: int) -> tuple[list[dict[str, Any]], int | None, str]:
    if not page.can("osf.see.vm-list", "vm.see-main."):
        return [], None, ""
    optional = (("state", "vm.see.state"), ("di_tag", "vm.see.di-tag"))
    fields = ["id", "name", *(f for f, acl in optional if page.can(acl))]
    try:
        answer = page.call("vm_get_list", filters={"osf_id": osf_id}, fields=fields,
                           order_by=[("name", False)], limit=VM_ROWS)  # fmt: skip
    except WatError as exc:
        return [], None, refusal_text(exc)
    return answer.rows, answer.total, ""


def _values_of(osf: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": osf.get("name") or "",
        "memory": "" if osf.get("memory") is None else str(osf["memory"]),
        "user_storage": "" if osf.get("user_storage") is None else str(osf["user_storage"]),
        "overlay": bool(osf.get("overlay")),
        "description": osf.get("description") or "",
    }


def _show(page: Page, osf_id: int, *, error: str = "", status: int = 200,
          values: dict[str, Any] | None = None) -> Response:  # fmt: skip
    try:
        osf = fetch_one(page, KIND.list_action, osf_id)
    except WatError as exc:
        return refused_page(page, KIND, exc)
    if osf is None:
        return missing(page, KIND, osf_id)
    if error:
        page.flash("error", error)
    else:
        show_done(page)
    dis, dis_error = _dis(page, osf_id)
    tags, tags_error = _tags(page, osf_id, dis) if page.can("osf.see.di-list") else ([], "")
    vms, vms_total, vms_error = _vms(page, osf_id)
    context = {
        "osf": osf,
        "values": values or _values_of(osf),
        "dis": dis,
        "dis_error": dis_error,
        "tags": tags,
        "tags_error": tags_error,
        "vms": vms,
        "vms_total": vms_total,
        "vms_error": vms_error,
        **properties_context(page, KIND, osf_id, osf),
        "history": history(page, KIND, osf_id),
    }
    return render(page, "osfs/detail.html", context, status=status)


@router.get("/osfs/{osf_id:int}")
def show_osf(page: ReadPage, osf_id: int) -> Response:
    return _show(page, osf_id)


@router.post("/osfs/{osf_id:int}")
def edit_osf(
    page: MutatingPage,
    osf_id: int,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    memory: Annotated[str, Form(max_length=20)] = "",
    user_storage: Annotated[str, Form(max_length=20)] = "",
    overlay: Annotated[str, Form(max_length=8)] = "",
    description: Annotated[str, Form(max_length=MAX_TEXT)] = "",
) -> Response:
    values: dict[str, Any] = {
        "name": name.strip(), "memory": memory, "user_storage": user_storage,
        "overlay": bool(overlay), "description": description,
    }  # fmt: skip
    try:
        osf = fetch_one(page, KIND.list_action, osf_id)
    except WatError as exc:
        return refused_page(page, KIND, exc)
    if osf is None:
        return missing(page, KIND, osf_id)
    try:
        wanted = _typed(page, values)
    except Refused as exc:
        return _show(page, osf_id, error=exc.message, status=400, values=values)
    current = {f: osf.get(f) for f in _FORM_FIELDS}
    current["description"] = current["description"] or None
    arguments = changed(current, wanted)
    if arguments:
        try:
            page.call("osf_update", filters={"id": osf_id}, arguments=arguments)
        except WatError as exc:
            return _show(page, osf_id, error=refusal_text(exc), status=refusal_status(exc),
                         values=values)  # fmt: skip
    return RedirectResponse(f"/osfs/{osf_id}?done=saved", status_code=303)


@router.post("/osfs/{osf_id:int}/delete")
def delete_osf(page: MutatingPage, osf_id: int) -> Response:
    return run_button(page, KIND, osf_id, "osf_delete", None, None, _refused)
