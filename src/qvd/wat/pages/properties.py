"""Property definitions: the custom property keys of a tenant (or, for superadmins,
the supertenant's, which nodes use), the kinds of object each applies to; list,
create, edit and delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import RedirectResponse, Response

from qvd.wat.lists import Column, ListView, MassAction, list_router
from qvd.wat.pages.infra import (
    MAX_NAME,
    MAX_TEXT,
    changed,
    may_create,
)
from qvd.wat.pages.nav import tenants
from qvd.wat.pages.objectpages import (
    ObjectKind,
    fetch_one,
    missing,
    refusal_status,
    refusal_text,
    refused_page,
    reloaded_buttons_router,
    run_button,
    show_done,
)
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = ["KIND", "OBJECTS", "VIEW", "router"]

KIND = ObjectKind("property", "/properties", "Property")
OBJECTS = (
    ("user", "Users"),
    ("vm", "Virtual machines"),
    ("host", "Nodes"),
    ("osf", "OS flavours"),
    ("di", "Disk images"),
)
"""The kinds of object a property may apply to (host: superadmins only)."""

VIEW = ListView(
    object="property",
    path="/properties",
    title="Properties",
    list_action="property_get_list",
    columns=(
        Column("key", "Key", link="/properties/{id}"),
        Column("description", "Description"),
        *(Column(f"in_{obj}", label, "bool") for obj, label in OBJECTS),
        Column("tenant_name", "Tenant", acl="tenant.see-main."),
    ),
    search=("key", "description"),
    detail="/properties/{id}",
    create="/properties/new",
    mass=(MassAction("delete", "Delete", "property_delete", "property.manage.", confirm=True),),
    default_order=(("key", False),),
    acl="property.see-main.",
    name_field="key",
)

router = APIRouter(include_in_schema=False)
router.include_router(list_router(VIEW))


def _objects(page: Page) -> list[tuple[str, str]]:
    return [(o, label) for o, label in OBJECTS if o != "host" or page.superadmin]


def _tenant_options(page: Page) -> list[tuple[int, str]]:
    own = [(int(t["id"]), str(t["name"])) for t in tenants(page)]
    return [*own, (0, page.t("* (superadmins: node properties)"))]


def _form(page: Page, template: str, values: dict[str, Any], *, error: str = "",
          status: int = 200, prop: dict[str, Any] | None = None) -> Response:  # fmt: skip
    if error:
        page.flash("error", error)
    context = {
        "values": values,
        "prop": prop,
        "objects": _objects(page),
        "tenant_options": _tenant_options(page) if page.superadmin else [],
    }
    return render(page, template, context, status=status)


@router.get("/properties/new")
def new_property(page: ReadPage) -> Response:
    if (refusal := may_create(page, KIND)) is not None:
        return refusal
    values = {"key": "", "description": "", "objects": [o for o, _ in _objects(page)],
              "tenant_id": page.tenant_choice}  # fmt: skip
    return _form(page, "properties/new.html", values)


@router.post("/properties/new")
def create_property(
    page: MutatingPage,
    key: Annotated[str, Form(max_length=MAX_NAME)] = "",
    description: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    objects: Annotated[list[str] | None, Form(max_length=16)] = None,
    tenant_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    values: dict[str, Any] = {
        "key": key.strip(), "description": description, "objects": list(objects or []),
        "tenant_id": int(tenant_id) if tenant_id.isdigit() else None,
    }  # fmt: skip
    arguments: dict[str, Any] = {"key": values["key"], "__property_assign__": values["objects"]}
    if description.strip():
        arguments["description"] = description
    if page.superadmin and values["tenant_id"] is not None:
        arguments["tenant_id"] = values["tenant_id"]
    try:
        answer = page.call("property_create", arguments=arguments)
    except WatError as exc:
        return _form(page, "properties/new.html", values, error=refusal_text(exc),
                     status=refusal_status(exc))  # fmt: skip
    return RedirectResponse(f"/properties/{answer.rows[0]['id']}?done=created", status_code=303)


def _values_of(prop: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": prop.get("key") or "",
        "description": prop.get("description") or "",
        "objects": [o for o, _ in OBJECTS if prop.get(f"in_{o}")],
    }


def _show(page: Page, property_id: int, *, error: str = "", status: int = 200,
          values: dict[str, Any] | None = None) -> Response:  # fmt: skip
    try:
        prop = fetch_one(page, KIND.list_action, property_id)
    except WatError as exc:
        return refused_page(page, KIND, exc)
    if prop is None:
        return missing(page, KIND, property_id)
    if not error:
        show_done(page)
    return _form(page, "properties/detail.html", values or _values_of(prop), error=error,
                 status=status, prop=prop)  # fmt: skip


@router.get("/properties/{property_id:int}")
def show_property(page: ReadPage, property_id: int) -> Response:
    return _show(page, property_id)


@router.post("/properties/{property_id:int}")
def edit_property(
    page: MutatingPage,
    property_id: int,
    key: Annotated[str, Form(max_length=MAX_NAME)] = "",
    description: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    objects: Annotated[list[str] | None, Form(max_length=16)] = None,
) -> Response:
    values: dict[str, Any] = {
        "key": key.strip(), "description": description, "objects": list(objects or []),
    }  # fmt: skip
    try:
        prop = fetch_one(page, KIND.list_action, property_id)
    except WatError as exc:
        return refused_page(page, KIND, exc)
    if prop is None:
        return missing(page, KIND, property_id)
    current = _values_of(prop)
    arguments = changed(current, {"key": values["key"], "description": values["description"]})
    if "description" in arguments and not arguments["description"].strip():
        arguments["description"] = None
    if sorted(values["objects"]) != sorted(current["objects"]):
        arguments["__property_assign__"] = values["objects"]
    if arguments:
        try:
            page.call("property_update", filters={"id": property_id}, arguments=arguments)
        except WatError as exc:
            return _show(page, property_id, error=refusal_text(exc),
                         status=refusal_status(exc), values=values)  # fmt: skip
    return RedirectResponse(f"/properties/{property_id}?done=saved", status_code=303)


def _refused(page: Page, property_id: int, exc: WatError) -> Response:
    return _show(page, property_id, error=refusal_text(exc), status=refusal_status(exc))


@router.post("/properties/{property_id:int}/delete")
def delete_property(page: MutatingPage, property_id: int) -> Response:
    return run_button(page, KIND, property_id, "property_delete", None, None, _refused)


router.include_router(reloaded_buttons_router(KIND))
