"""Tenants: managed by superadmins only (tenant administrators never hold ``tenant.*``
ACLs and never learn that other tenants exist). Tenants -1 (global) and 0 (the
supertenant) are not listed and cannot be changed through ``tenant_update``.

``mytenant_update`` lets an administrator change their own tenant's WAT defaults:
``language``, ``block`` (page size) and ``description``. It needs ``config.wat.``
(as in QVD; tenant administrators never hold ``tenant.*``), or for each argument the
matching ``tenant.update.*`` ACL. It takes no filters but ``{"id": <own tenant>}``:
any other filter is refused (6210) the same way whether that tenant exists or not.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import func, literal, select

from qvd.api.actions.core import Action, ActionRequest, ActionResult, Args, Ctx, for_each
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.actions.principal import Principal
from qvd.api.errors import Conflict, Forbidden, InvalidRequest, Status
from qvd.api.services.common import (
    block_arg,
    created_fields,
    crud_actions,
    language_arg,
    qvd_list_actions,
)
from qvd.config.names import TENANT_NAME
from qvd.db.models import Administrator, Osf, Role, Tenant, User

__all__ = ["ACTIONS", "SPEC"]

_FIELDS: dict[str, Field] = {
    "id": Field(expr=Tenant.id, kind=int, see="tenant.see.id"),
    "name": Field(expr=Tenant.name),
    "description": Field(expr=Tenant.description, see="tenant.see.description"),
    "language": Field(expr=Tenant.language, see="tenant.see.language"),
    "block": Field(expr=Tenant.block, kind=int, see="tenant.see.blocksize"),
    "blocked": Field(expr=Tenant.blocked, kind=bool, see="tenant.see.block"),
    **created_fields("tenant", Tenant),
}


@cache
def _base() -> Any:
    """FROM and JOINs of the list (built once; statements are immutable)."""
    return select(literal(1)).select_from(Tenant)


def _scope(p: Principal) -> Any:
    return Tenant.id > 0 if p.superadmin else Tenant.id == p.tenant_id


SPEC = ListSpec(object="tenant", fields=_FIELDS, base=_base, id_expr=Tenant.id, scope=_scope)


def _name(args: Args, **kwargs: Any) -> str | None:
    """The tenant name rule also refuses the reserved names ``*`` and ``-``."""
    return args.name(rule=TENANT_NAME, **kwargs)


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "tenant", ctx.principal)
    name = _name(args, required=True)
    tenant = Tenant(
        name=name,
        description=args.text("description", max_len=32768, nullable=True),
        language=language_arg(args) or "auto",
        block=block_arg(args, "tenant") or 10,
        blocked=args.take("blocked", bool) or False,
        creation_admin_id=ctx.principal.admin_id,
    )
    args.finish()
    ctx.session.add(tenant)
    ctx.session.flush()
    return ActionResult(rows=[{"id": tenant.id}], affected=[(tenant.id, name)])


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(tenant_id: int) -> str | None:
        args = Args(req.arguments, "tenant", ctx.principal)
        tenant = ctx.session.get_one(Tenant, tenant_id)
        if (name := _name(args, acl="tenant.update.name")) is not None:
            tenant.name = name
        if (language := language_arg(args, "tenant.update.language")) is not None:
            tenant.language = language
        if (block := block_arg(args, "tenant", "tenant.update.blocksize")) is not None:
            tenant.block = block
        if (blocked := args.take("blocked", bool, acl="tenant.update.block")) is not None:
            tenant.blocked = blocked
        if args.has("description"):
            tenant.description = args.text(
                "description", max_len=32768, acl="tenant.update.description", nullable=True
            )
        args.finish()
        return tenant.name

    return for_each(ctx, SPEC, req.filters, work)


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(tenant_id: int) -> str | None:
        tenant = ctx.session.get_one(Tenant, tenant_id)
        counts = {
            label: ctx.session.scalar(
                select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
            )
            for label, model in (
                ("users", User),
                ("OSFs", Osf),
                ("administrators", Administrator),
                ("roles", Role),
            )
        }
        left = ", ".join(f"{n} {label}" for label, n in counts.items() if n)
        if left:
            raise Conflict(
                f"tenant {tenant.name!r} still has {left}; delete them first",
                Status.HAS_DEPENDENTS,
            )
        ctx.session.delete(tenant)
        return tenant.name

    return for_each(ctx, SPEC, req.filters, work)


# what each mytenant_update argument needs besides config.wat.
_MYTENANT_ACLS = {
    "language": "tenant.update.language",
    "block": "tenant.update.blocksize",
    "description": "tenant.update.description",
}


def _mytenant_update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    own = ctx.principal.tenant_id
    if req.filters not in (None, {}, [], {"id": own}):
        raise InvalidRequest(
            "mytenant_update changes the caller's own tenant and takes no filters",
            Status.BAD_FILTER,
        )
    args = Args(req.arguments, "tenant", ctx.principal)
    if args.empty:
        raise InvalidRequest(
            "mytenant_update: give language, block or description", Status.MISSING_ARGUMENT
        )
    for name, acl in _MYTENANT_ACLS.items():
        if args.has(name) and not ctx.principal.can_any("config.wat.", acl):
            raise Forbidden(
                f"tenant: the argument {name!r} needs the ACL 'config.wat.' or {acl!r}",
                Status.FORBIDDEN_ARGUMENT,
            )
    tenant = ctx.session.get_one(Tenant, own)
    if (language := language_arg(args)) is not None:
        tenant.language = language
    if (block := block_arg(args, "tenant")) is not None:
        tenant.block = block
    if args.has("description"):
        tenant.description = args.text("description", max_len=32768, nullable=True)
    args.finish()
    return ActionResult(affected=[(tenant.id, tenant.name)])


ACTIONS = (
    *crud_actions(
        "tenant", SPEC, see=("tenant.see-main.",),
        create=_create, update=_update, delete=_delete,
    ),
    Action(name="mytenant_update", qvd_object="tenant", type_of_action="update",
           acls=("config.wat.", r"^tenant\.update\.(language|blocksize|description)$"),
           handler=_mytenant_update),
    *qvd_list_actions("tenant", SPEC, tiny=("tenant.see-main.",)),
)  # fmt: skip
