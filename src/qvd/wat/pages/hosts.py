"""Nodes (hosts): list (live state), details with their VMs and properties, create,
edit, block/unblock, stop all their VMs and delete.

Nodes are global objects: only superadmins hold ``host.*`` ACLs; anybody else gets the
API's refusal (403 with its message)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import RedirectResponse, Response

from qvd.wat.lists import Column, ListView, MassAction, list_router
from qvd.wat.lists.choices import HOST_STATE_CHOICES
from qvd.wat.pages.infra import (
    MAX_NAME,
    MAX_TEXT,
    changed,
    may_create,
)
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
    reloaded_buttons_router,
    run_button,
    show_done,
)
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = ["KIND", "VIEW", "router"]

KIND = ObjectKind("host", "/hosts", "Node")
LIVE_FIELDS = ("state", "blocked", "number_of_vms", "number_of_vms_connected", "free_ram_mb")
VM_LIVE_FIELDS = ("state", "user_state")
VM_ROWS = 50  # a node page lists its first VMs; the VM list filters the rest

VIEW = ListView(
    object="host",
    path="/hosts",
    title="Nodes",
    list_action="host_get_list",
    columns=(
        Column("id", "Id", "number", acl="host.see.id"),
        Column("name", "Name", link="/hosts/{id}"),
        Column("address", "Address", acl="host.see.address"),
        Column("state", "State", "state", acl="host.see.state", choices=HOST_STATE_CHOICES),
        Column("blocked", "Blocked", "bool", acl="host.see.block"),
        Column("number_of_vms", "VMs running", "number", acl="host.see.vms-info"),
        Column("number_of_vms_connected", "Users connected", "number", acl="host.see.vms-info"),
        Column("free_ram_mb", "Free RAM (MB)", "number", acl="host.see.state"),
        Column("idle_cpu", "Idle CPU (%)", "number", acl="host.see.state", default=False),
    ),
    search=("name", "address"),
    detail="/hosts/{id}",
    create="/hosts/new",
    live=LIVE_FIELDS,
    mass=(
        MassAction("block", "Block", "host_update", "host.update.block", {"blocked": True}),
        MassAction("unblock", "Unblock", "host_update", "host.update.block", {"blocked": False}),
        MassAction("stop_vms", "Stop all VMs", "host_stop_vms", "host.update.stop-vms",
                   confirm=True),
        MassAction("delete", "Delete", "host_delete", "host.delete.", confirm=True),
    ),
    acl="host.see-main.",
)  # fmt: skip

router = APIRouter(include_in_schema=False)
router.include_router(list_router(VIEW))


def _refused(page: Page, host_id: int, exc: WatError) -> Response:
    return _show(page, host_id, error=refusal_text(exc), status=refusal_status(exc))


router.include_router(properties_router(KIND, _refused))


def _form(
    page: Page,
    template: str,
    values: dict[str, Any],
    *,
    error: str = "",
    status: int = 200,
    host: dict[str, Any] | None = None,
) -> Response:
    return render(page, template, {"values": values, "error": error, "host": host}, status=status)


@router.get("/hosts/new")
def new_host(page: ReadPage) -> Response:
    if (refusal := may_create(page, KIND)) is not None:
        return refusal
    return _form(page, "hosts/new.html", {"name": "", "address": "", "description": ""})


@router.post("/hosts/new")
def create_host(
    page: MutatingPage,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    address: Annotated[str, Form(max_length=MAX_NAME)] = "",
    description: Annotated[str, Form(max_length=MAX_TEXT)] = "",
) -> Response:
    values = {"name": name.strip(), "address": address.strip(), "description": description}
    arguments: dict[str, Any] = {"name": values["name"], "address": values["address"]}
    if description.strip():
        arguments["description"] = description
    try:
        answer = page.call("host_create", arguments=arguments)
    except WatError as exc:
        return _form(page, "hosts/new.html", values, error=refusal_text(exc),
                     status=refusal_status(exc))  # fmt: skip
    return RedirectResponse(f"/hosts/{answer.rows[0]['id']}?done=created", status_code=303)


def _vms(page: Page, host_id: int) -> tuple[list[dict[str, Any]], int | None, str]:
    """The first VMs running on the node, how many there are, or why not shown."""
    if not page.can("vm.see-main.", "vm.see.host"):
        return [], None, ""
    fields = ["id", "name", "user_name", "user_id", "state", "user_state"]
    allowed = [f for f in fields if f in ("id", "name") or page.can(_VM_ACL[f])]
    try:
        answer = page.call(
            "vm_get_list", filters={"host_id": host_id}, fields=allowed,
            order_by=[("name", False)], limit=VM_ROWS,
        )  # fmt: skip
    except WatError as exc:
        return [], None, refusal_text(exc)
    return answer.rows, answer.total, ""


_VM_ACL = {
    "user_name": "vm.see.user",
    "user_id": "vm.see.user",
    "state": "vm.see.state",
    "user_state": "vm.see.user-state",
}


def _show(page: Page, host_id: int, *, error: str = "", status: int = 200,
          values: dict[str, Any] | None = None) -> Response:  # fmt: skip
    try:
        host = fetch_one(page, KIND.list_action, host_id)
    except WatError as exc:
        return refused_page(page, KIND, exc)
    if host is None:
        return missing(page, KIND, host_id)
    if error:
        page.flash("error", error)
    else:
        show_done(page)
    vms, vms_total, vms_error = _vms(page, host_id)
    context = {
        "host": host,
        "values": values or {k: host.get(k) or "" for k in ("name", "address", "description")},
        "vms": vms,
        "vms_total": vms_total,
        "vms_error": vms_error,
        "live_fields": [f for f in LIVE_FIELDS if f in host],
        "vm_live_fields": [f for f in VM_LIVE_FIELDS if vms and f in vms[0]],
        **properties_context(page, KIND, host_id, host),
        "history": history(page, KIND, host_id),
    }
    return render(page, "hosts/detail.html", context, status=status)


@router.get("/hosts/{host_id:int}")
def show_host(page: ReadPage, host_id: int) -> Response:
    return _show(page, host_id)


@router.post("/hosts/{host_id:int}")
def edit_host(
    page: MutatingPage,
    host_id: int,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    address: Annotated[str, Form(max_length=MAX_NAME)] = "",
    description: Annotated[str, Form(max_length=MAX_TEXT)] = "",
) -> Response:
    values = {"name": name.strip(), "address": address.strip(), "description": description}
    try:
        host = fetch_one(page, KIND.list_action, host_id, ["id", "name", "address", "description"])
    except WatError as exc:
        return refused_page(page, KIND, exc)
    if host is None:
        return missing(page, KIND, host_id)
    current = {**host, "description": host.get("description") or ""}
    arguments = changed(current, values)
    if arguments:
        try:
            page.call("host_update", filters={"id": host_id}, arguments=arguments)
        except WatError as exc:
            return _show(page, host_id, error=refusal_text(exc), status=refusal_status(exc),
                         values=values)  # fmt: skip
    return RedirectResponse(f"/hosts/{host_id}?done=saved", status_code=303)


def _act(page: Page, host_id: int, action: str, arguments: dict[str, Any] | None,
         done: str | None) -> Response:  # fmt: skip
    return run_button(page, KIND, host_id, action, arguments, done, _refused)


@router.post("/hosts/{host_id:int}/block")
def block_host(page: MutatingPage, host_id: int) -> Response:
    return _act(page, host_id, "host_update", {"blocked": True}, "block")


@router.post("/hosts/{host_id:int}/unblock")
def unblock_host(page: MutatingPage, host_id: int) -> Response:
    return _act(page, host_id, "host_update", {"blocked": False}, "unblock")


@router.post("/hosts/{host_id:int}/stop-vms")
def stop_host_vms(page: MutatingPage, host_id: int) -> Response:
    return _act(page, host_id, "host_stop_vms", None, "stopping")


@router.post("/hosts/{host_id:int}/delete")
def delete_host(page: MutatingPage, host_id: int) -> Response:
    return _act(page, host_id, "host_delete", None, None)


router.include_router(reloaded_buttons_router(KIND))
