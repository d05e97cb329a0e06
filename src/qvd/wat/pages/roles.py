"""Roles: the list, a new role, and the role's page, which is the ACL editor: the roles it
inherits, the ACLs granted and denied on it, and beside them the effective result (every
ACL in effect and through which role), so that an administrator sees what a change does.

Everything goes through the API's role actions (``role_update`` with
``__acls_changes__`` / ``__roles_changes__``); built-in roles (``fixed``) are shown
read-only, and the API refuses changes to them anyway. The API's deny rule: unassigning
an ACL drops a direct grant and denies it when the role still inherits it; assigning an
ACL the role denies lifts the deny (inherited again), any other is granted on the role."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import RedirectResponse, Response

from qvd.wat.lists import Column, ListView, MassAction, list_router
from qvd.wat.port import Answer, WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = [
    "VIEW",
    "acl_groups",
    "acl_summary",
    "acls_of_roles",
    "attempt",
    "load_one",
    "missing",
    "refusal_status",
    "refusal_text",
    "role_choices",
    "router",
    "seen_fields",
    "tenant_options",
]

MAX_NAME = 256
MAX_TEXT = 32768
MAX_ORIGIN_CHECK = 40  # ACLs granted and inherited at once whose origin is asked for

VIEW = ListView(
    object="role",
    path="/roles",
    title="Roles",
    list_action="role_get_list",
    columns=(
        Column("id", "Id", "number", acl="role.see.id"),
        Column("name", "Name", link="/roles/{id}"),
        Column("tenant_name", "Tenant", acl="tenant.see-main."),
        Column("roles", "Inherited roles", "list", sortable=False, acl="role.see.inherited-roles"),
        Column("acls", "ACLs", "count", sortable=False, acl="role.see.acl-list"),
        Column("fixed", "Built-in", "bool"),
    ),
    search=("name",),
    detail="/roles/{id}",
    create="/roles/new",
    mass=(MassAction("delete", "Delete", "role_delete", acl="role.delete.", confirm=True),),
    default_order=(("name", False),),
    acl="role.see-main.",
)

router = APIRouter(include_in_schema=False)
router.include_router(list_router(VIEW))  # first: <path>/mass and <path>/columns are not ids


# ---- shared with the administrators' pages ------------------------------------------------
def refusal_text(exc: WatError) -> str:
    """The API's reason, with each object's own when some of them failed."""
    parts = [exc.message]
    parts += [f"{msg} ({status})" for status, msg in exc.failures.values() if msg != exc.message]
    return "; ".join(parts) + f" [{exc.status}]"


def refusal_status(exc: WatError) -> int:
    """The HTTP status fitting QVD's code: 403 for ACL refusals, 404 for what is not
    there, 409 for conflicts with the object's state, 400 for bad input."""
    codes = [exc.status, *(s for s, _ in exc.failures.values())]
    code = next((c for c in codes if c != 1200), exc.status)
    if 4200 <= code < 4300:
        return 403
    if code in (1300, 7100, 7110, 2290):
        return 404
    if 5000 <= code < 6000 or 7000 <= code < 8000:
        return 409
    return 400


def attempt(
    page: Page,
    action: str,
    done: str | Callable[[Answer], str],
    refused: Callable[[int], Response],
    **kw: Any,
) -> Response:
    """Run ``action`` (``filters=``, ``arguments=``): on success a 303 to ``done`` (or
    where ``done(answer)`` says); refused, the API's reason flashed on ``refused(status)``
    (the page again, with the HTTP status fitting QVD's code)."""
    try:
        answer = page.call(action, **kw)
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return refused(refusal_status(exc))
    return RedirectResponse(done if isinstance(done, str) else done(answer), status_code=303)


def missing(page: Page, what: str, back: str) -> Response:
    """The clear 404 page of an object that is not there (or not this tenant's)."""
    return render(page, "roles/missing.html", {"what": what, "back": back}, status=404)


def acl_groups(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """ACL rows grouped by object (the part of the name before the first dot), both in
    name order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: str(r.get("name", ""))):
        name = str(row.get("name", ""))
        groups.setdefault(name.split(".", 1)[0], []).append(row)
    return sorted(groups.items())


ACL_OBJECTS = (
    "administrator", "config", "di", "host", "log", "osf", "property", "role", "tenant",
    "user", "views", "vm",
)  # fmt: skip


def acl_summary(page: Page, action: str, key: str, object_id: int) -> list[tuple[str, int, int]]:
    """``(object, effective, total)`` per kind of object, from ``number_of_acls_in_role``
    or ``number_of_acls_in_admin`` (objects the viewer sees no ACL of are left out)."""
    patterns = [f"{o}.%" for o in ACL_OBJECTS]
    try:
        rows = page.call(action, filters={key: object_id, "acl_pattern": patterns}).rows
    except WatError:
        return []
    return [
        (str(r["acl_pattern"]).removesuffix(".%"), int(r["effective"]), int(r["total"]))
        for r in rows
        if r.get("total")
    ]


def tenant_options(page: Page) -> list[tuple[str, str]]:
    """Real tenants a superadmin may create something in, as (id, name) form options."""
    try:
        rows = page.call("tenant_tiny_list", order_by=[("name", False)]).rows
    except WatError:
        return []
    return [
        (str(r["id"]), str(r["name"])) for r in rows if isinstance(r.get("id"), int) and r["id"] > 0
    ]


def seen_fields(page: Page, always: list[str], by_acl: Iterable[tuple[str, str]]) -> list[str]:
    """The fields to ask for: ``always``, each ``(field, acl)`` of ``by_acl`` the viewer
    holds the ACL of, and the tenant's for a superadmin."""
    fields = [*always, *(name for name, acl in by_acl if page.can(acl))]
    if page.superadmin:
        fields += ["tenant_id", "tenant_name"]
    return fields


def load_one(page: Page, action: str, object_id: int, fields: list[str]) -> dict[str, Any] | None:
    """One object by id through its ``*_get_list`` action; None when it is not there or
    not the viewer's to see."""
    try:
        rows = page.call(action, filters={"id": object_id}, fields=fields, limit=1).rows
    except WatError as exc:
        if refusal_status(exc) == 404:
            return None
        raise
    return rows[0] if rows else None


def role_choices(page: Page, tenant_id: object, taken: set[int]) -> list[tuple[int, str]]:
    """Roles that could be given (to an administrator, or inherited by a role) in the
    tenant ``tenant_id`` (known to a superadmin only): visible, usable there (its own or
    the superadmins' roles), not in ``taken``."""
    filters: dict[str, Any] | None = None
    if page.superadmin and isinstance(tenant_id, int):
        filters = {"tenant_id": [tenant_id, -1]}
    try:
        rows = page.call(
            "role_get_list", filters=filters, fields=["id", "name"], order_by=[("name", False)]
        ).rows
    except WatError:
        return []
    return [(int(r["id"]), str(r["name"])) for r in rows if r["id"] not in taken]


# ---- reading a role ------------------------------------------------------------------------
_ROLE_FIELDS_BY_ACL = (
    ("description", "role.see.description"),
    ("role_map", "role.see.inherited-roles"),
    ("acl_map", "role.see.acl-list"),
)


def _load_role(page: Page, role_id: int) -> dict[str, Any] | None:
    fields = seen_fields(page, ["id", "name", "fixed", "internal"], _ROLE_FIELDS_BY_ACL)
    return load_one(page, "role_get_list", role_id, fields)


def _inherited(role: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = role.get("role_map") or {}
    out = [
        {"id": int(v.get("id", k)), "name": str(v.get("name", ""))}
        if isinstance(v, dict)
        else {"id": int(k), "name": str(v)}
        for k, v in raw.items()
    ]
    return sorted(out, key=lambda r: r["name"])


def acls_of_roles(page: Page, role_ids: list[int]) -> dict[int, set[str]]:
    """Each role's ACLs in effect, in one ``get_acls_in_roles`` call (the API's ``roles``
    origin field is not asked for: it costs a recursive walk per ACL and role)."""
    if not role_ids:
        return {}
    rows = page.call(
        "get_acls_in_roles", filters={"role_id": role_ids}, fields=["role_id", "name"]
    ).rows
    held: dict[int, set[str]] = {r: set() for r in role_ids}
    for row in rows:
        held.setdefault(int(row["role_id"]), set()).add(str(row["name"]))
    return held


def _effective(
    page: Page, role: Mapping[str, Any], parents: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The role's ACLs in effect, each with the inherited roles it comes through
    (``via``) and whether the role grants it itself (``own``). An ACL the role both
    grants and inherits is told apart by the API's origin field, asked only for those."""
    if not page.can("role.see.acl-list"):
        return []
    role_id = int(role["id"])
    held = acls_of_roles(page, [role_id, *(p["id"] for p in parents)])
    via = {
        name: sorted(p["name"] for p in parents if name in held.get(p["id"], ()))
        for name in held.get(role_id, set())
    }
    own = {name for name, through in via.items() if not through}
    both = sorted(name for name, through in via.items() if through)
    if both and not role.get("fixed") and len(both) <= MAX_ORIGIN_CHECK:
        rows = page.call(
            "get_acls_in_roles", filters={"role_id": role_id, "name": both},
            fields=["name", "roles"],
        ).rows  # fmt: skip
        own |= {str(r["name"]) for r in rows if str(role_id) in (r.get("roles") or {})}
    return [{"name": name, "own": name in own, "via": via[name]} for name in sorted(via)]


def _result(effective: list[dict[str, Any]], denied: list[str]) -> list[dict[str, Any]]:
    """The effective ACLs (in effect) and the denied ones (not), for one table."""
    shown = [{**e, "in_effect": True} for e in effective]
    return shown + [{"name": n, "in_effect": False, "own": False, "via": []} for n in denied]


def _acl_choices(page: Page) -> list[tuple[str, list[Mapping[str, Any]]]]:
    try:
        rows = page.call("acl_get_list", fields=["id", "name"], order_by=[("name", False)]).rows
    except WatError:
        return []
    return acl_groups(rows)


def _show_role(
    page: Page, role_id: int, *, status: int = 200, form: Mapping[str, str] | None = None
) -> Response:
    role = _load_role(page, role_id)
    if role is None:
        return missing(page, page.t("This role does not exist or is not yours to see."), "/roles")
    inherited = _inherited(role)
    effective = _effective(page, role, inherited)
    acl_map = role.get("acl_map") or {}
    editable = not role.get("fixed")
    facts: list[tuple[str, Any, str | None]] = [(page.t("Id"), role["id"], None)]
    if page.superadmin:
        facts.append((page.t("Tenant"), role.get("tenant_name"), None))
    facts += [
        (page.t("Built-in"), bool(role.get("fixed")), None),
        (page.t("Internal"), bool(role.get("internal")), None),
    ]
    if "description" in role:
        facts.append((page.t("Description"), role.get("description"), None))
    context = {
        "role": role,
        "facts": facts,
        "form": {
            "name": role["name"],
            "description": role.get("description") or "",
            **(form or {}),
        },
        "inherited": inherited,
        "granted": acl_groups({"name": e["name"]} for e in effective if e["own"]),
        "denied": acl_groups({"name": n} for n in acl_map.get("negative", [])),
        "result": acl_groups(_result(effective, acl_map.get("negative", []))),
        "effective_count": len(effective),
        "summary": acl_summary(page, "number_of_acls_in_role", "role_id", role_id)
        if page.can("role.see.acl-list")
        else [],
        "editable": editable,
        "can_acls": editable and page.can("role.update.assign-acl"),
        "can_roles": editable and page.can("role.update.assign-role"),
        "can_edit": editable and page.can("role.update.name"),
        "can_delete": editable and page.can("role.delete."),
        "role_choices": (
            role_choices(page, role.get("tenant_id"), {role["id"], *(r["id"] for r in inherited)})
            if editable and page.can("role.update.assign-role")
            else []
        ),
        "acl_choices": _acl_choices(page)
        if editable and page.can("role.update.assign-acl")
        else [],
    }
    return render(page, "roles/detail.html", context, status=status)


# ---- routes ------------------------------------------------------------------------------
@router.get("/roles/new")
def new_role(page: ReadPage) -> Response:
    chosen = "" if page.tenant_choice is None else str(page.tenant_choice)
    return _new_form(page, {"tenant_id": chosen})


def _new_form(page: Page, form: Mapping[str, str], status: int = 200) -> Response:
    tenants = tenant_options(page) if page.superadmin else []
    return render(page, "roles/new.html", {"form": form, "tenant_choices": tenants}, status=status)


@router.post("/roles/new")
def create_role(
    page: MutatingPage,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    description: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    tenant_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    form = {"name": name, "description": description, "tenant_id": tenant_id}
    arguments: dict[str, Any] = {"name": name.strip()}
    if description.strip():
        arguments["description"] = description
    if page.superadmin and tenant_id.lstrip("-").isdigit():
        arguments["tenant_id"] = int(tenant_id)
    return attempt(
        page, "role_create", lambda answer: f"/roles/{answer.rows[0]['id']}",
        lambda status: _new_form(page, form, status), arguments=arguments,
    )  # fmt: skip


@router.get("/roles/{role_id}")
def show_role(role_id: int, page: ReadPage) -> Response:
    return _show_role(page, role_id)


def _update(
    page: Page, role_id: int, arguments: Mapping[str, Any], form: Mapping[str, str] | None = None
) -> Response:
    """``role_update`` on one role: back to its page, or its page with the API's refusal."""
    if _load_role(page, role_id) is None:
        return missing(page, page.t("This role does not exist or is not yours to see."), "/roles")
    return attempt(
        page, "role_update", f"/roles/{role_id}",
        lambda status: _show_role(page, role_id, status=status, form=form),
        filters={"id": role_id}, arguments=arguments,
    )  # fmt: skip


@router.post("/roles/{role_id}")
def edit_role(
    role_id: int,
    page: MutatingPage,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    description: Annotated[str | None, Form(max_length=MAX_TEXT)] = None,
) -> Response:
    role = _load_role(page, role_id)
    if role is None:
        return missing(page, page.t("This role does not exist or is not yours to see."), "/roles")
    arguments: dict[str, Any] = {}
    if name.strip() != role["name"]:
        arguments["name"] = name.strip()
    if description is not None and description != (role.get("description") or ""):
        arguments["description"] = description or None
    if not arguments:
        return RedirectResponse(f"/roles/{role_id}", status_code=303)
    return _update(page, role_id, arguments, {"name": name, "description": description or ""})


_ACL_MOVES = {
    "grant": "assign_acls",
    "undeny": "assign_acls",
    "deny": "unassign_acls",
    "ungrant": "unassign_acls",
}


@router.post("/roles/{role_id}/acls")
def change_acl(
    role_id: int,
    page: MutatingPage,
    acl: Annotated[str, Form(max_length=MAX_NAME)] = "",
    how: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Grant, deny, or take back a grant or a deny of one ACL on the role."""
    key = _ACL_MOVES.get(how)
    if key is None or not acl:
        page.flash("error", page.t("Choose an ACL and what to do with it."))
        return _show_role(page, role_id, status=400)
    if how == "ungrant":
        return _ungrant(page, role_id, acl)
    return _update(page, role_id, {"__acls_changes__": {key: [acl]}})


def _ungrant(page: Page, role_id: int, acl: str) -> Response:
    """Take back a grant made on the role. The API's unassign also denies an ACL the
    role still inherits; taking back a grant must not deny, so such a deny is lifted
    at once (the ACL stays as the inherited roles give it)."""
    if _load_role(page, role_id) is None:
        return missing(page, page.t("This role does not exist or is not yours to see."), "/roles")
    try:
        for key in ("unassign_acls", "assign_acls"):
            page.call(
                "role_update", filters={"id": role_id},
                arguments={"__acls_changes__": {key: [acl]}},
            )  # fmt: skip
            role = _load_role(page, role_id)
            denied = (role or {}).get("acl_map", {}).get("negative", [])
            if acl not in denied:
                break
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return _show_role(page, role_id, status=refusal_status(exc))
    return RedirectResponse(f"/roles/{role_id}", status_code=303)


@router.post("/roles/{role_id}/roles")
def change_inheritance(
    role_id: int,
    page: MutatingPage,
    role: Annotated[str, Form(max_length=12)] = "",
    how: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Inherit another role, or stop inheriting it."""
    key = {"inherit": "assign_roles", "disinherit": "unassign_roles"}.get(how)
    if key is None or not role.isdigit():
        page.flash("error", page.t("Choose a role and what to do with it."))
        return _show_role(page, role_id, status=400)
    return _update(page, role_id, {"__roles_changes__": {key: [int(role)]}})


@router.post("/roles/{role_id}/delete")
def delete_role(role_id: int, page: MutatingPage) -> Response:
    if _load_role(page, role_id) is None:
        return missing(page, page.t("This role does not exist or is not yours to see."), "/roles")
    return attempt(
        page, "role_delete", "/roles", lambda status: _show_role(page, role_id, status=status),
        filters={"id": role_id},
    )  # fmt: skip
