"""Administrators: the list, a new administrator, and an administrator's page: facts,
the roles assigned (add, remove), the effective ACLs grouped by object (and through
which roles), the edit form (the password is never shown back) and delete (the API
refuses deleting oneself, 5200: the page shows its reason)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import RedirectResponse, Response

from qvd.wat.lists import Column, ListView, MassAction, list_router
from qvd.wat.pages.roles import (
    acl_groups,
    acl_summary,
    acls_of_roles,
    attempt,
    load_one,
    missing,
    role_choices,
    seen_fields,
    tenant_options,
)
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = ["VIEW", "router"]

MAX_NAME = 256
MAX_TEXT = 32768
LANGUAGE_CHOICES = (("auto", "Automatic"), ("en", "English"), ("es", "Spanish"))

VIEW = ListView(
    object="administrator",
    path="/administrators",
    title="Administrators",
    list_action="administrator_get_list",
    columns=(
        Column("id", "Id", "number", acl="administrator.see.id"),
        Column("name", "Name", link="/administrators/{id}"),
        Column("tenant_name", "Tenant", acl="tenant.see-main."),
        Column("roles", "Roles", "list", sortable=False, acl="administrator.see.roles"),
        Column("language", "Language", acl="administrator.see.language"),
        Column("block", "Page size", "number"),
    ),
    search=("name",),
    detail="/administrators/{id}",
    create="/administrators/new",
    mass=(
        MassAction(
            "delete", "Delete", "administrator_delete", acl="administrator.delete.", confirm=True
        ),
    ),
    default_order=(("name", False),),
    acl="administrator.see-main.",
)

router = APIRouter(include_in_schema=False)
router.include_router(list_router(VIEW))  # first: <path>/mass and <path>/columns are not ids


def _gone(page: Page) -> Response:
    return missing(
        page, page.t("This administrator does not exist or is not yours to see."), "/administrators"
    )


_FIELDS_BY_ACL = (
    ("description", "administrator.see.description"),
    ("role_map", "administrator.see.roles"),
    ("creation_date", "administrator.see.creation-date"),
    ("creation_admin_name", "administrator.see.created-by"),
)


def _load(page: Page, admin_id: int) -> dict[str, Any] | None:
    fields = seen_fields(page, ["id", "name", "language", "block"], _FIELDS_BY_ACL)
    return load_one(page, "administrator_get_list", admin_id, fields)


def _effective(
    page: Page, admin: Mapping[str, Any], roles: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The administrator's ACLs in effect (the union of its roles'), each with the roles
    that give it."""
    if not page.can("administrator.see.acl-list"):
        return []
    if "role_map" not in admin:  # its roles are not ours to see: the API's list alone
        rows = page.call(
            "get_acls_in_admins", filters={"admin_id": admin["id"]}, fields=["name"]
        ).rows
        return [{"name": str(r["name"]), "via": []} for r in rows]
    held = acls_of_roles(page, [r["id"] for r in roles])
    names = set().union(*held.values()) if held else set()
    return [
        {"name": name, "via": sorted(r["name"] for r in roles if name in held.get(r["id"], ()))}
        for name in sorted(names)
    ]


def _show(
    page: Page, admin_id: int, *, status: int = 200, form: Mapping[str, str] | None = None
) -> Response:
    admin = _load(page, admin_id)
    if admin is None:
        return _gone(page)
    roles: list[dict[str, Any]] = sorted(
        ({"id": int(k), "name": str(v)} for k, v in (admin.get("role_map") or {}).items()),
        key=lambda r: str(r["name"]),
    )
    effective = _effective(page, admin, roles)
    facts: list[tuple[str, Any, str | None]] = [(page.t("Id"), admin["id"], None)]
    if page.superadmin:
        facts.append((page.t("Tenant"), admin.get("tenant_name"), None))
    facts += [
        (page.t("Language"), admin.get("language"), None),
        (page.t("Page size"), admin.get("block"), None),
    ]
    for key, label in (
        ("description", "Description"),
        ("creation_date", "Created"),
        ("creation_admin_name", "Created by"),
    ):
        if key in admin:
            facts.append((page.t(label), admin.get(key), None))
    oneself = admin["id"] == page.setup.get("admin_id")
    can_roles = page.can("administrator.update.assign-role")
    context = {
        "admin": admin,
        "facts": facts,
        "roles": roles,
        "effective": acl_groups(effective),
        "effective_count": len(effective),
        "summary": acl_summary(page, "number_of_acls_in_admin", "admin_id", admin_id)
        if page.can("administrator.see.acl-list")
        else [],
        "oneself": oneself,
        "form": {
            "name": admin["name"],
            "language": admin.get("language") or "auto",
            "block": str(admin.get("block") or ""),
            "description": admin.get("description") or "",
            **(form or {}),
        },
        "languages": [(v, page.t(t)) for v, t in LANGUAGE_CHOICES],
        "can_roles": can_roles,
        "can_password": page.can("administrator.update.password"),
        "can_language": page.can("administrator.update.language"),
        "can_description": page.can("administrator.update.description") and "description" in admin,
        "can_delete": page.can("administrator.delete."),
        "role_choices": role_choices(page, admin.get("tenant_id"), {r["id"] for r in roles})
        if can_roles
        else [],
    }
    return render(page, "administrators/detail.html", context, status=status)


def _new_form(page: Page, form: Mapping[str, str], status: int = 200) -> Response:
    tenants = []
    if page.superadmin:
        tenants = [*tenant_options(page), ("0", page.t("* (superadministrators)"))]
    languages = [(v, page.t(t)) for v, t in LANGUAGE_CHOICES]
    context = {"form": form, "tenant_choices": tenants, "languages": languages}
    return render(page, "administrators/new.html", context, status=status)


@router.get("/administrators/new")
def new_admin(page: ReadPage) -> Response:
    chosen = "" if page.tenant_choice is None else str(page.tenant_choice)
    return _new_form(page, {"tenant_id": chosen, "language": "auto"})


@router.post("/administrators/new")
def create_admin(
    page: MutatingPage,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    password: Annotated[str, Form(max_length=MAX_NAME)] = "",
    language: Annotated[str, Form(max_length=16)] = "auto",
    tenant_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    """Create an administrator; a refusal shows the form again with what was typed
    (never the password)."""
    form = {"name": name, "language": language, "tenant_id": tenant_id}
    arguments: dict[str, Any] = {"name": name.strip(), "password": password}
    if language and language != "auto":
        arguments["language"] = language
    if page.superadmin and tenant_id.lstrip("-").isdigit():
        arguments["tenant_id"] = int(tenant_id)
    return attempt(
        page, "administrator_create", lambda answer: f"/administrators/{answer.rows[0]['id']}",
        lambda status: _new_form(page, form, status), arguments=arguments,
    )  # fmt: skip


@router.get("/administrators/{admin_id}")
def show_admin(admin_id: int, page: ReadPage) -> Response:
    return _show(page, admin_id)


def _update(
    page: Page, admin_id: int, arguments: Mapping[str, Any], form: Mapping[str, str] | None = None
) -> Response:
    return attempt(
        page, "administrator_update", f"/administrators/{admin_id}",
        lambda status: _show(page, admin_id, status=status, form=form),
        filters={"id": admin_id}, arguments=arguments,
    )  # fmt: skip


@router.post("/administrators/{admin_id}")
def edit_admin(
    admin_id: int,
    page: MutatingPage,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    password: Annotated[str, Form(max_length=MAX_NAME)] = "",
    current_password: Annotated[str, Form(max_length=MAX_NAME)] = "",
    language: Annotated[str, Form(max_length=16)] = "",
    block: Annotated[str, Form(max_length=12)] = "",
    description: Annotated[str | None, Form(max_length=MAX_TEXT)] = None,
) -> Response:
    """Change what differs from the administrator as stored (so that a field the
    editor may not change is not sent); an empty password leaves it as it is."""
    admin = _load(page, admin_id)
    if admin is None:
        return _gone(page)
    form = {"name": name, "language": language, "block": block, "description": description or ""}
    arguments: dict[str, Any] = {}
    if name.strip() and name.strip() != admin["name"]:
        arguments["name"] = name.strip()
    if language and language != admin.get("language"):
        arguments["language"] = language
    if block.strip() != str(admin.get("block") or ""):
        if not block.strip().isdigit():
            page.flash("error", page.t("The page size must be a whole number from 1 to 10000."))
            return _show(page, admin_id, status=400, form=form)
        arguments["block"] = int(block)
    if description is not None and description != (admin.get("description") or ""):
        arguments["description"] = description or None
    if password:
        arguments["password"] = password
        if current_password:
            arguments["current_password"] = current_password
    if not arguments:
        return RedirectResponse(f"/administrators/{admin_id}", status_code=303)
    return _update(page, admin_id, arguments, form)


@router.post("/administrators/{admin_id}/roles")
def change_roles(
    admin_id: int,
    page: MutatingPage,
    role: Annotated[str, Form(max_length=12)] = "",
    how: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Give the administrator a role, or take one away."""
    if _load(page, admin_id) is None:
        return _gone(page)
    key = {"assign": "assign_roles", "unassign": "unassign_roles"}.get(how)
    if key is None or not role.isdigit():
        page.flash("error", page.t("Choose a role and what to do with it."))
        return _show(page, admin_id, status=400)
    return _update(page, admin_id, {"__roles_changes__": {key: [int(role)]}})


@router.post("/administrators/{admin_id}/delete")
def delete_admin(admin_id: int, page: MutatingPage) -> Response:
    if _load(page, admin_id) is None:
        return _gone(page)
    return attempt(
        page, "administrator_delete", "/administrators",
        lambda status: _show(page, admin_id, status=status), filters={"id": admin_id},
    )  # fmt: skip
