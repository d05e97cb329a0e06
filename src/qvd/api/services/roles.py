"""Roles and ACLs: a role grants ACLs, inherits other roles, and may deny an ACL it
would inherit (reference §5.4-5.6); assigning an ACL the role denies lifts the deny.
Built-in roles (tenant -1, ``fixed``) are shared by every tenant and cannot be changed.

``number_of_acls_in_role`` (and ``number_of_acls_in_admin`` in ``administrators``)
count ACLs by name pattern, for the WAT's ACL tree ("12 of 40 vm ACLs"). Filters:
``role_id`` (``admin_id``): one id or a list, required (6220); ``acl_pattern``: one
SQL LIKE pattern or a list, default ``%``. Any other filter is refused (6210); ids
out of the caller's scope select nothing (1300). One row per id and pattern:
``{"role_id", "acl_pattern", "total", "effective"}``, where ``total`` counts the ACLs
matching the pattern that the caller may see (no ``tenant.``/``host.`` for tenant
administrators) and ``effective`` those of them the role holds after inheritance and
denies (an administrator: what it may use, as its sessions get it).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    column,
    delete,
    exists,
    false,
    func,
    literal,
    literal_column,
    select,
    table,
)
from sqlalchemy.orm import Session, aliased

from qvd.api.actions.core import Action, ActionRequest, ActionResult, Args, Ctx, for_each
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.actions.principal import GLOBAL_TENANT_ID, Principal
from qvd.api.errors import Conflict, Forbidden, InvalidRequest, NotFound, Status
from qvd.api.services.common import (
    created_fields,
    crud_actions,
    list_action,
    qvd_list_actions,
    tenant_arg,
    tenant_fields,
    tiny_action,
)
from qvd.config.names import ROLE_NAME
from qvd.db.acls import role_acls
from qvd.db.models import Acl, AclRoleRelation, Role, RoleRoleRelation

__all__ = [
    "ACLS_IN_ROLES_SPEC",
    "ACL_ORIGIN_SEE",
    "ACL_SPEC",
    "ACTIONS",
    "SPEC",
    "acl_counts",
    "acl_scope",
    "count_filters",
    "id_map",
    "resolve_roles",
    "visible_role_scope",
]

role_effective = table(
    "role_effective_acls",
    column("role_id", Integer),
    column("acl_id", Integer),
    column("acl_name", String),
)
_inherited = aliased(Role)
_EMPTY = "'{}'::varchar[]"


def id_map(key: Any, value: Any) -> Any:
    """The aggregate ``{"<key>": value}`` over a query's rows (``{}`` without rows): the
    id-keyed maps QVD answers (``{"<role id>": "<name>"}`` …)."""
    return func.coalesce(
        func.jsonb_object_agg(func.cast(key, String), value), literal_column("'{}'::jsonb")
    )


_acl_names = (
    select(func.coalesce(func.array_agg(role_effective.c.acl_name), literal_column(_EMPTY)))
    .where(role_effective.c.role_id == Role.id)
    .correlate(Role)
    .scalar_subquery()
)
_role_names = (
    select(func.coalesce(func.array_agg(_inherited.name), literal_column(_EMPTY)))
    .select_from(RoleRoleRelation)
    .join(_inherited, _inherited.id == RoleRoleRelation.inherited_id)
    .where(RoleRoleRelation.inheritor_id == Role.id)
    .correlate(Role)
    .scalar_subquery()
)

_role_map = (
    select(
        id_map(_inherited.id, func.jsonb_build_object("id", _inherited.id, "name", _inherited.name))
    )
    .select_from(RoleRoleRelation)
    .join(_inherited, _inherited.id == RoleRoleRelation.inherited_id)
    .where(RoleRoleRelation.inheritor_id == Role.id)
    .correlate(Role)
    .scalar_subquery()
)
"""The inherited roles as ``{"<id>": {"id": …, "name": …}}`` (QVD's shape)."""

_denied = (
    select(func.coalesce(func.array_agg(Acl.name), literal_column(_EMPTY)))
    .select_from(AclRoleRelation)
    .join(Acl, Acl.id == AclRoleRelation.acl_id)
    .where(AclRoleRelation.role_id == Role.id, AclRoleRelation.positive.is_(False))
    .correlate(Role)
    .scalar_subquery()
)
_acl_map = func.jsonb_build_object("positive", _acl_names, "negative", _denied)
"""The role's ACLs as ``{"positive": [held], "negative": [denied]}`` (QVD's shape)."""

_FIELDS: dict[str, Field] = {
    "id": Field(expr=Role.id, kind=int, see="role.see.id"),
    "name": Field(expr=Role.name),
    "description": Field(expr=Role.description, see="role.see.description"),
    "fixed": Field(expr=Role.fixed, kind=bool),
    "internal": Field(expr=Role.internal, kind=bool),
    "acls": Field(expr=_acl_names, kind=list, see="role.see.acl-list", filterable=False,
                  default=False),
    "roles": Field(expr=_role_names, kind=list, see="role.see.inherited-roles",
                   filterable=False),
    "role_map": Field(expr=_role_map, kind=dict, see="role.see.inherited-roles",
                      filterable=False, default=False),
    "acl_map": Field(expr=_acl_map, kind=dict, see="role.see.acl-list", filterable=False,
                     default=False),
    **created_fields("role", Role),
    **tenant_fields(Role.tenant_id),
}  # fmt: skip


def visible_role_scope(p: Principal) -> Any:
    if p.superadmin:
        return None
    return Role.tenant_id.in_((p.tenant_id, GLOBAL_TENANT_ID))


@cache
def _base() -> Any:
    """FROM and JOINs of the list (built once; statements are immutable)."""
    return select(literal(1)).select_from(Role)


SPEC = ListSpec(
    object="role", fields=_FIELDS, base=_base, id_expr=Role.id, scope=visible_role_scope
)


def resolve_roles(session: Session, principal: Principal, refs: Any, tenant_id: int) -> list[Role]:
    """Roles named by id or name, visible to the caller and usable in ``tenant_id``."""
    if not isinstance(refs, list):
        raise InvalidRequest("roles must be given as a list of ids or names", Status.BAD_ROLE)
    found: list[Role] = []
    for ref in refs:
        stmt = select(Role).where(Role.tenant_id.in_((tenant_id, GLOBAL_TENANT_ID)))
        if isinstance(ref, int) and not isinstance(ref, bool):
            stmt = stmt.where(Role.id == ref)
        elif isinstance(ref, str) and ref.isdigit():
            stmt = stmt.where(Role.id == int(ref))
        elif isinstance(ref, str):
            stmt = stmt.where(Role.name == ref).order_by(Role.tenant_id.desc())
        else:
            raise InvalidRequest(f"{ref!r} is not a role id or name", Status.BAD_ROLE)
        scope = visible_role_scope(principal)
        if scope is not None:
            stmt = stmt.where(scope)
        role = session.scalars(stmt.limit(1)).first()
        if role is None:
            raise NotFound(f"there is no role {ref!r} usable in this tenant", Status.BAD_ROLE)
        found.append(role)
    return found


def _acl_ids(session: Session, principal: Principal, names: Any) -> list[int]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidRequest("ACLs must be given as a list of names", Status.BAD_ACL)
    ids: list[int] = []
    for name in names:
        acl_id = session.scalar(select(Acl.id).where(Acl.name == name))
        hidden = not principal.superadmin and name.startswith(("tenant.", "host."))
        if acl_id is None or hidden:
            raise NotFound(f"there is no ACL {name!r}", Status.BAD_ACL)
        ids.append(int(acl_id))
    return ids


def _set_acl(session: Session, role_id: int, acl_id: int, positive: bool) -> None:
    session.execute(
        delete(AclRoleRelation).where(
            AclRoleRelation.role_id == role_id, AclRoleRelation.acl_id == acl_id
        )
    )
    session.add(AclRoleRelation(role_id=role_id, acl_id=acl_id, positive=positive))
    session.flush()


def _assign_acls(session: Session, role: Role, acl_ids: list[int]) -> None:
    """Grant each ACL; one the role denies gets its deny lifted, and is granted on the
    role only when no inherited role gives it back (so that inheritance stays live)."""
    for acl_id in acl_ids:
        denied = (
            AclRoleRelation.role_id == role.id,
            AclRoleRelation.acl_id == acl_id,
            AclRoleRelation.positive.is_(False),
        )
        if session.scalar(select(AclRoleRelation.acl_id).where(*denied)) is not None:
            session.execute(delete(AclRoleRelation).where(*denied))
            session.flush()
            name = session.scalar(select(Acl.name).where(Acl.id == acl_id))
            if name in role_acls(session, role.id):
                continue
        _set_acl(session, role.id, acl_id, True)


def _unassign_acls(session: Session, role: Role, acl_ids: list[int]) -> None:
    """Drop a direct grant; deny an ACL that the role still gets by inheritance."""
    for acl_id in acl_ids:
        session.execute(
            delete(AclRoleRelation).where(
                AclRoleRelation.role_id == role.id, AclRoleRelation.acl_id == acl_id
            )
        )
        session.flush()
        name = session.scalar(select(Acl.name).where(Acl.id == acl_id))
        if name in role_acls(session, role.id):
            _set_acl(session, role.id, acl_id, False)


def _inherit(session: Session, role: Role, parents: list[Role], add: bool) -> None:
    for parent in parents:
        session.execute(
            delete(RoleRoleRelation).where(
                RoleRoleRelation.inheritor_id == role.id,
                RoleRoleRelation.inherited_id == parent.id,
            )
        )
        if add:
            if parent.id == role.id:
                raise Conflict(f"role {role.name!r} cannot inherit itself", Status.ROLE_CYCLE)
            session.add(RoleRoleRelation(inheritor_id=role.id, inherited_id=parent.id))
        session.flush()


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "role", ctx.principal)
    tenant_id = tenant_arg(args, ctx.session, ctx.principal, "role")
    role = Role(
        tenant_id=tenant_id,
        name=args.name(rule=ROLE_NAME, required=True),
        description=args.text("description", max_len=32768, nullable=True),
        creation_admin_id=ctx.principal.admin_id,
    )
    acls = args.take("__acls__", list, acl="role.update.assign-acl") or []
    parents = args.take("__roles__", list, acl="role.update.assign-role") or []
    args.finish()
    ctx.session.add(role)
    ctx.session.flush()
    _assign_acls(ctx.session, role, _acl_ids(ctx.session, ctx.principal, acls))
    _inherit(ctx.session, role, resolve_roles(ctx.session, ctx.principal, parents, tenant_id), True)
    return ActionResult(rows=[{"id": role.id}], affected=[(role.id, role.name)])


def _changes(args: Args, key: str, acl: str, names: tuple[str, str]) -> tuple[list[Any], ...]:
    changes = args.take(key, dict, acl=acl) or {}
    out = tuple(changes.pop(n, None) or [] for n in names)
    if changes:
        raise InvalidRequest(f"{key} takes {' and '.join(names)}, not {sorted(changes)}", 6230)
    return out


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(role_id: int) -> str | None:
        args = Args(req.arguments, "role", ctx.principal)
        role = ctx.session.get_one(Role, role_id)
        if role.fixed or role.tenant_id == GLOBAL_TENANT_ID:
            raise Forbidden(f"role {role.name!r} is built in and cannot be changed", 4210)
        if (name := args.name(rule=ROLE_NAME, acl="role.update.name")) is not None:
            role.name = name
        if args.has("description"):
            role.description = args.text(
                "description", max_len=32768, acl="role.update.description", nullable=True
            )
        give, take = _changes(
            args, "__acls_changes__", "role.update.assign-acl", ("assign_acls", "unassign_acls")
        )
        inherit, disinherit = _changes(
            args, "__roles_changes__", "role.update.assign-role", ("assign_roles", "unassign_roles")
        )
        args.finish()
        s, p = ctx.session, ctx.principal
        _inherit(s, role, resolve_roles(s, p, inherit, role.tenant_id), True)
        _inherit(s, role, resolve_roles(s, p, disinherit, role.tenant_id), False)
        _assign_acls(s, role, _acl_ids(s, p, give))
        _unassign_acls(s, role, _acl_ids(s, p, take))
        return role.name

    return for_each(ctx, SPEC, req.filters, work)


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(role_id: int) -> str | None:
        role = ctx.session.get_one(Role, role_id)
        if role.fixed or role.tenant_id == GLOBAL_TENANT_ID:
            raise Forbidden(f"role {role.name!r} is built in and cannot be deleted", 4210)
        ctx.session.delete(role)
        return role.name

    return for_each(ctx, SPEC, req.filters, work)


# ---- ACL lists ----------------------------------------------------------------------------
def acl_scope(p: Principal) -> Any:
    if p.superadmin:
        return None
    return ~Acl.name.like("tenant.%") & ~Acl.name.like("host.%")


_ACL_FIELDS: dict[str, Field] = {
    "id": Field(expr=Acl.id, kind=int),
    "name": Field(expr=Acl.name),
    "description": Field(expr=Acl.description),
}

ACL_SPEC = ListSpec(
    object="acl",
    fields=_ACL_FIELDS,
    base=lambda: select(literal(1)).select_from(Acl),
    id_expr=Acl.id,
    scope=acl_scope,
)


def _in_roles_scope(p: Principal) -> Any:
    roles_seen = select(Role.id)
    scope = visible_role_scope(p)
    if scope is not None:
        roles_seen = roles_seen.where(scope)
    acl = acl_scope(p)
    role_ok = role_effective.c.role_id.in_(roles_seen)
    return role_ok if acl is None else role_ok & acl


def _granted_by(role_id: Any, acl_id: Any) -> Any:
    """``{"<id>": "<name>"}`` of the roles a role holds an ACL through: itself when it
    grants the ACL directly, and each role it inherits directly that holds it."""
    origin = aliased(Role)
    direct = (
        exists()
        .where(
            AclRoleRelation.role_id == origin.id,
            AclRoleRelation.acl_id == acl_id,
            AclRoleRelation.positive.is_(True),
        )
        .correlate_except(AclRoleRelation)
    )
    inherited = origin.id.in_(
        select(RoleRoleRelation.inherited_id)
        .where(RoleRoleRelation.inheritor_id == role_id)
        .correlate_except(RoleRoleRelation)
    ) & acl_id.in_(select(func.qvd_role_acl_ids(origin.id)).correlate(origin).scalar_subquery())
    return (
        select(id_map(origin.id, origin.name))
        .where(((origin.id == role_id) & direct) | inherited)
        .scalar_subquery()
    )


ACL_ORIGIN_SEE = "role.see.acl-list-roles"

ACLS_IN_ROLES_SPEC = ListSpec(
    object="acl",
    fields={
        **_ACL_FIELDS,
        "role_id": Field(expr=role_effective.c.role_id, kind=int),
        "acl_id": Field(expr=Acl.id, kind=int),
        "acl_name": Field(expr=Acl.name),
        "roles": Field(
            expr=_granted_by(role_effective.c.role_id, role_effective.c.acl_id),
            kind=dict,
            see=ACL_ORIGIN_SEE,
            filterable=False,
        ),
    },
    base=lambda: (
        select(literal(1)).select_from(role_effective).join(Acl, Acl.id == role_effective.c.acl_id)
    ),
    id_expr=Acl.id,
    scope=_in_roles_scope,
)


def _acls_in_roles(ctx: Ctx, req: ActionRequest) -> ActionResult:
    if not isinstance(req.filters, dict) or "role_id" not in req.filters:
        raise InvalidRequest("get_acls_in_roles needs a role_id filter", Status.MISSING_FILTER)
    return list_action(ACLS_IN_ROLES_SPEC)(ctx, req)


def _int_list(value: Any, name: str) -> list[int]:
    """Ids given as numbers or as text of digits (the WAT sends ``"10005"``)."""
    values = value if isinstance(value, list) else [value]
    ids: list[int] = []
    for v in values:
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v.strip())
        if isinstance(v, bool) or not isinstance(v, int) or not -(2**31) <= v < 2**31:
            raise InvalidRequest(f"filter {name!r} takes an id or a list of ids", 6310)
        ids.append(v)
    if not ids:
        raise InvalidRequest(f"filter {name!r} takes an id or a list of ids", 6310)
    return ids


def _operand(value: Any) -> Any:
    """The value of ``{"=": v}`` or ``{"~": v}`` (qa4's filter form), else ``value``."""
    if isinstance(value, dict) and len(value) == 1:
        op, inner = next(iter(value.items()))
        if op in ("=", "~", "LIKE", "like"):
            return inner
    return value


def count_filters(filters: Any, id_key: str) -> tuple[list[int], list[str]]:
    """The ids and ACL name patterns of a ``number_of_acls_in_*`` request."""
    if not isinstance(filters, dict) or id_key not in filters:
        raise InvalidRequest(f"give the {id_key!r} filter", Status.MISSING_FILTER)
    unknown = sorted(set(filters) - {id_key, "acl_pattern"})
    if unknown:
        raise InvalidRequest(
            f"unknown filters {unknown} (known: {id_key}, acl_pattern)", Status.BAD_FILTER
        )
    ids = _int_list(_operand(filters[id_key]), id_key)
    raw = _operand(filters.get("acl_pattern", "%"))
    patterns = raw if isinstance(raw, list) else [raw]
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise InvalidRequest("acl_pattern takes a LIKE pattern or a list of them", 6310)
    return ids, list(dict.fromkeys(patterns))


def acl_counts(
    session: Session, principal: Principal, held: frozenset[str], patterns: list[str]
) -> list[tuple[str, int, int]]:
    """``(pattern, total, effective)``: ACLs matching each pattern that the caller may
    see, and how many of them are in ``held``."""
    out = []
    visible = acl_scope(principal)
    for pattern in patterns:
        stmt = select(
            func.count(), func.count().filter(Acl.name.in_(held) if held else false())
        ).where(Acl.name.like(pattern))
        if visible is not None:
            stmt = stmt.where(visible)
        total, effective = session.execute(stmt).one()
        out.append((pattern, int(total), int(effective)))
    return out


def _number_of_acls(ctx: Ctx, req: ActionRequest) -> ActionResult:
    role_ids, patterns = count_filters(req.filters, "role_id")
    stmt = select(Role.id).where(Role.id.in_(role_ids)).order_by(Role.id)
    scope = visible_role_scope(ctx.principal)
    if scope is not None:
        stmt = stmt.where(scope)
    found = list(ctx.session.scalars(stmt))
    if not found:
        raise NotFound("no role matches the filters", Status.ZERO_SELECTED)
    rows = [
        {"role_id": role_id, "acl_pattern": pattern, "total": total, "effective": effective}
        for role_id in found
        for pattern, total, effective in acl_counts(
            ctx.session, ctx.principal, role_acls(ctx.session, role_id), patterns
        )
    ]
    return ActionResult(rows=rows, total=len(rows))


ACTIONS = (
    *crud_actions(
        "role", SPEC, see=("role.see-main.", r"^administrator\.see\.roles$"),
        create=_create, update=_update, delete=_delete,
    ),
    Action(name="acl_get_list", qvd_object="acl", type_of_action="see",
           acls=(r"^(role|administrator)\.see\.acl-list$",), handler=list_action(ACL_SPEC)),
    Action(name="get_acls_in_roles", qvd_object="acl", type_of_action="see",
           acls=(r"^(role|administrator)\.see\.acl-list",), handler=_acls_in_roles),
    Action(name="number_of_acls_in_role", qvd_object="acl", type_of_action="see",
           acls=(r"^(role|administrator)\.see\.acl-list",), handler=_number_of_acls),
    *qvd_list_actions(
        "role", SPEC,
        tiny=("role.see-main.", r"^(administrator\.see\.|role\.see\.inherited-)roles$"),
    ),
    Action(name="acl_tiny_list", qvd_object="acl", type_of_action="see",
           acls=(r"^(role|administrator)\.see\.acl-list$",), handler=tiny_action(ACL_SPEC)),
)  # fmt: skip
