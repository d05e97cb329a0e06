"""Administrators: who may use the API, with which roles (``current_admin_setup``, which
also carries the WAT views, is in ``views``).

``number_of_acls_in_admin`` counts an administrator's ACLs by name pattern, with the
filters and rows of ``number_of_acls_in_role`` (see ``roles``) keyed by ``admin_id``;
``effective`` counts what the administrator may really use (its roles' ACLs, plus the
recovery administrator's own, minus ``tenant.``/``host.`` for tenant administrators).

A new password ends the administrator's API sessions: ``myadmin_update`` ends the
caller's other sessions (not the one that made the change) and needs the current
password (``current_password``: 6240 when missing, 3200 when wrong; wrong tries back off
per administrator, ``qvd.loginlimit``), also through ``administrator_update`` on oneself;
``administrator_update`` by someone else ends all of the target's sessions.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Integer, String, column, delete, func, literal, literal_column, select, table

from qvd.api.actions.auth import hash_token
from qvd.api.actions.core import Action, ActionRequest, ActionResult, Args, Ctx, for_each
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.actions.principal import (
    RECOVERY_ADMIN_ID,
    SUPERTENANT_ID,
    Principal,
    effective_acls,
)
from qvd.api.errors import AuthError, Conflict, InvalidRequest, NotFound, RateLimited, Status
from qvd.api.services.common import (
    block_arg,
    created_fields,
    crud_actions,
    in_scope,
    language_arg,
    list_action,
    qvd_list_actions,
    tenant_arg,
)
from qvd.api.services.roles import (
    ACL_SPEC,
    acl_counts,
    acl_scope,
    count_filters,
    id_map,
    resolve_roles,
)
from qvd.config.names import ADMIN_NAME
from qvd.db.acls import administrator_acls
from qvd.db.models import (
    Acl,
    Administrator,
    ApiSession,
    Role,
    RoleAdministratorRelation,
    Tenant,
)
from qvd.db.passwords import hash_password, verify_password
from qvd.loginlimit import FailureLimiter

__all__ = ["ACTIONS", "SPEC"]

_roles = (
    select(func.coalesce(func.array_agg(Role.name), literal_column("'{}'::varchar[]")))
    .select_from(RoleAdministratorRelation)
    .join(Role, Role.id == RoleAdministratorRelation.role_id)
    .where(RoleAdministratorRelation.administrator_id == Administrator.id)
    .correlate(Administrator)
    .scalar_subquery()
)


def _role_map_of(admin_id: Any, *where: Any) -> Any:
    """``{"<id>": "<name>"}`` of an administrator's roles (QVD's shape), those matching
    ``where``."""
    return (
        select(id_map(Role.id, Role.name))
        .select_from(RoleAdministratorRelation)
        .join(Role, Role.id == RoleAdministratorRelation.role_id)
        .where(RoleAdministratorRelation.administrator_id == admin_id, *where)
        .correlate_except(RoleAdministratorRelation, Role)
        .scalar_subquery()
    )


_role_map = _role_map_of(Administrator.id)

_FIELDS: dict[str, Field] = {
    "id": Field(expr=Administrator.id, kind=int, see="administrator.see.id"),
    "name": Field(expr=Administrator.name),
    "description": Field(expr=Administrator.description, see="administrator.see.description"),
    "language": Field(expr=Administrator.language, see="administrator.see.language"),
    "block": Field(expr=Administrator.block, kind=int),
    "roles": Field(expr=_roles, kind=list, see="administrator.see.roles", filterable=False),
    "role_map": Field(
        expr=_role_map, kind=dict, see="administrator.see.roles", filterable=False, default=False
    ),
    **created_fields("administrator", Administrator),
    "tenant_id": Field(expr=Administrator.tenant_id, kind=int, superadmin_only=True),
    "tenant_name": Field(expr=Tenant.name, kind=str, superadmin_only=True),
}


@cache
def _base() -> Any:
    """FROM and JOINs of the list (built once; statements are immutable)."""
    return (
        select(literal(1))
        .select_from(Administrator)
        .join(Tenant, Tenant.id == Administrator.tenant_id)
    )


SPEC = ListSpec(
    object="administrator",
    fields=_FIELDS,
    base=_base,
    id_expr=Administrator.id,
    scope=in_scope(Administrator.tenant_id),
)


def _set_roles(ctx: Ctx, admin: Administrator, refs: list[Any], add: bool) -> None:
    for role in resolve_roles(ctx.session, ctx.principal, refs, admin.tenant_id):
        ctx.session.execute(
            delete(RoleAdministratorRelation).where(
                RoleAdministratorRelation.administrator_id == admin.id,
                RoleAdministratorRelation.role_id == role.id,
            )
        )
        if add:
            ctx.session.add(RoleAdministratorRelation(role_id=role.id, administrator_id=admin.id))
        ctx.session.flush()


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "administrator", ctx.principal)
    tenant_id = tenant_arg(
        args, ctx.session, ctx.principal, "administrator", supertenant=True, default_own=True
    )
    admin = Administrator(
        tenant_id=tenant_id,
        name=args.name(rule=ADMIN_NAME, required=True),
        password=hash_password(args.take("password", str, required=True)),
        description=args.text("description", max_len=32768, nullable=True),
        language=language_arg(args, "administrator.create.language") or "auto",
        block=block_arg(args, "administrator") or 10,
        creation_admin_id=ctx.principal.admin_id,
    )
    roles = args.take("__roles__", list, acl="administrator.update.assign-role") or []
    args.finish()
    ctx.session.add(admin)
    ctx.session.flush()
    _set_roles(ctx, admin, roles, True)
    return ActionResult(rows=[{"id": admin.id}], affected=[(admin.id, admin.name)])


# wrong current passwords given to myadmin_update, per administrator (in this process)
_CURRENT_PASSWORD_TRIES = FailureLimiter(attempts=5, window=60)


def _check_current_password(admin: Administrator, current: str | None) -> None:
    """Refuse a change of one's own password without the right current one."""
    if current is None:
        raise InvalidRequest(
            "changing your own password needs your current one ('current_password')",
            Status.MISSING_ARGUMENT,
        )
    key = f"admin:{admin.id}"
    wait = _CURRENT_PASSWORD_TRIES.blocked_for(key)
    if wait > 0:
        raise RateLimited(
            f"too many wrong current passwords: try again in {int(wait) + 1} s",
            retry_after=int(wait) + 1,
        )
    if not verify_password(admin.password, current):
        _CURRENT_PASSWORD_TRIES.failed(key)
        raise AuthError("the current password is wrong", Status.WRONG_CREDENTIALS)
    _CURRENT_PASSWORD_TRIES.succeeded(key)


def _end_sessions(ctx: Ctx, admin_id: int) -> None:
    """End ``admin_id``'s API sessions but the caller's own (a password changed)."""
    stmt = delete(ApiSession).where(ApiSession.administrator_id == admin_id)
    token = ctx.principal.session_token
    if token is not None and admin_id == ctx.principal.admin_id:
        stmt = stmt.where(ApiSession.token_sha256 != hash_token(token))
    ctx.session.execute(stmt)


def _apply(ctx: Ctx, admin: Administrator, args: Args, *, own: bool) -> None:
    acl = None if own else "administrator.update.password"
    self_change = own or admin.id == ctx.principal.admin_id
    current = args.take("current_password", str) if self_change else None
    if (password := args.take("password", str, acl=acl)) is not None:
        if self_change:  # by myadmin_update or administrator_update on oneself
            _check_current_password(admin, current)
        admin.password = hash_password(password)
        _end_sessions(ctx, admin.id)
    if language := language_arg(args, None if own else "administrator.update.language"):
        admin.language = language
    if (block := block_arg(args, "administrator")) is not None:
        admin.block = block
    if own:
        return
    if (name := args.name(rule=ADMIN_NAME)) is not None:
        admin.name = name
    if args.has("description"):
        admin.description = args.text(
            "description", max_len=32768, acl="administrator.update.description", nullable=True
        )
    changes = args.take("__roles_changes__", dict, acl="administrator.update.assign-role") or {}
    assign = changes.pop("assign_roles", None) or []
    unassign = changes.pop("unassign_roles", None) or []
    if changes:
        raise InvalidRequest("__roles_changes__ takes assign_roles and unassign_roles", 6230)
    _set_roles(ctx, admin, assign, True)
    _set_roles(ctx, admin, unassign, False)


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(admin_id: int) -> str | None:
        args = Args(req.arguments, "administrator", ctx.principal)
        admin = ctx.session.get_one(Administrator, admin_id)
        _apply(ctx, admin, args, own=False)
        args.finish()
        return admin.name

    return for_each(ctx, SPEC, req.filters, work)


def _myadmin_update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "administrator", ctx.principal)
    admin = ctx.session.get_one(Administrator, ctx.principal.admin_id)
    _apply(ctx, admin, args, own=True)
    args.finish()
    return ActionResult(affected=[(admin.id, admin.name)])


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(admin_id: int) -> str | None:
        admin = ctx.session.get_one(Administrator, admin_id)
        if admin_id == ctx.principal.admin_id:
            raise Conflict("an administrator cannot delete itself", Status.DELETE_SELF)
        if admin_id == RECOVERY_ADMIN_ID:
            raise Conflict("the recovery administrator cannot be deleted", 7120)
        ctx.session.delete(admin)
        return admin.name

    return for_each(ctx, SPEC, req.filters, work)


admin_effective = table(
    "administrator_effective_acls",
    column("administrator_id", Integer),
    column("acl_id", Integer),
    column("acl_name", String),
)


def _in_admins_scope(p: Principal) -> Any:
    admins_seen = select(Administrator.id)
    scope = SPEC.scope(p)
    if scope is not None:
        admins_seen = admins_seen.where(scope)
    acl = acl_scope(p)
    admin_ok = admin_effective.c.administrator_id.in_(admins_seen)
    return admin_ok if acl is None else admin_ok & acl


def _admin_roles_with(admin_id: Any, acl_id: Any) -> Any:
    """``{"<id>": "<name>"}`` of an administrator's roles that hold an ACL."""
    return _role_map_of(
        admin_id,
        acl_id.in_(select(func.qvd_role_acl_ids(Role.id)).correlate(Role).scalar_subquery()),
    )


_ACLS_IN_ADMINS_SPEC = ListSpec(
    object="acl",
    fields={
        **ACL_SPEC.fields,
        "admin_id": Field(expr=admin_effective.c.administrator_id, kind=int),
        "acl_id": Field(expr=Acl.id, kind=int),
        "acl_name": Field(expr=Acl.name),
        "roles": Field(
            expr=_admin_roles_with(admin_effective.c.administrator_id, admin_effective.c.acl_id),
            kind=dict,
            see="administrator.see.acl-list-roles",
            filterable=False,
        ),
    },
    base=lambda: (
        select(literal(1))
        .select_from(admin_effective)
        .join(Acl, Acl.id == admin_effective.c.acl_id)
    ),
    id_expr=Acl.id,
    scope=_in_admins_scope,
)


def _acls_in_admins(ctx: Ctx, req: ActionRequest) -> ActionResult:
    if not isinstance(req.filters, dict) or "admin_id" not in req.filters:
        raise InvalidRequest("get_acls_in_admins needs an admin_id filter", Status.MISSING_FILTER)
    return list_action(_ACLS_IN_ADMINS_SPEC)(ctx, req)


def _number_of_acls(ctx: Ctx, req: ActionRequest) -> ActionResult:
    admin_ids, patterns = count_filters(req.filters, "admin_id")
    stmt = select(Administrator.id, Administrator.tenant_id).where(Administrator.id.in_(admin_ids))
    scope = SPEC.scope(ctx.principal)
    if scope is not None:
        stmt = stmt.where(scope)
    found = ctx.session.execute(stmt.order_by(Administrator.id)).tuples().all()
    if not found:
        raise NotFound("no administrator matches the filters", Status.ZERO_SELECTED)
    every_acl = frozenset(ctx.session.scalars(select(Acl.name)))
    rows = []
    for admin_id, tenant_id in found:
        held = effective_acls(
            administrator_acls(ctx.session, admin_id),
            every_acl,
            admin_id=admin_id,
            superadmin=tenant_id == SUPERTENANT_ID,
        )
        rows += [
            {"admin_id": admin_id, "acl_pattern": pattern, "total": total, "effective": effective}
            for pattern, total, effective in acl_counts(ctx.session, ctx.principal, held, patterns)
        ]
    return ActionResult(rows=rows, total=len(rows))


ACTIONS = (
    *crud_actions(
        "administrator", SPEC, see=("administrator.see-main.",),
        create=_create, update=_update, delete=_delete,
    ),
    Action(name="myadmin_update", qvd_object="administrator", type_of_action="update",
           acls=(), handler=_myadmin_update),
    Action(name="get_acls_in_admins", qvd_object="acl", type_of_action="see",
           acls=(r"^administrator\.see\.acl-list",), handler=_acls_in_admins),
    Action(name="number_of_acls_in_admin", qvd_object="acl", type_of_action="see",
           acls=(r"^administrator\.see\.acl-list",), handler=_number_of_acls),
    *qvd_list_actions(
        "administrator", SPEC,
        tiny=(
            "administrator.see-main.",
            r"^(log\.filter\.administrator|[^.]+\.filter\.created-by)$",
        ),
    ),
)  # fmt: skip
