"""Users (the people who connect to desktops).

``user_get_state`` answers, for each user its filters select, ``connected`` when one
of the user's VMs has a connected user session and ``disconnected`` otherwise.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import func, literal, select

from qvd.api.actions.core import (
    Action,
    ActionRequest,
    ActionResult,
    Args,
    Ctx,
    for_each,
    selected_ids,
)
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.errors import Conflict, Status
from qvd.api.services.common import (
    apply_properties,
    created_fields,
    crud_actions,
    in_scope,
    language_arg,
    properties_field,
    property_args,
    qvd_list_actions,
    tenant_arg,
    tenant_fields,
)
from qvd.config.names import LOGIN
from qvd.db.models import User, Vm, VmRuntime
from qvd.db.passwords import hash_password

__all__ = ["ACTIONS", "SPEC"]


def _vm_count(*states: str) -> Any:
    stmt = select(func.count()).select_from(Vm).where(Vm.user_id == User.id)
    if states:
        stmt = stmt.join(VmRuntime, VmRuntime.vm_id == Vm.id).where(
            VmRuntime.user_state.in_(states)
        )
    return stmt.correlate(User).scalar_subquery()


_FIELDS: dict[str, Field] = {
    "id": Field(expr=User.id, kind=int, see="user.see.id"),
    "name": Field(expr=User.login),
    "description": Field(expr=User.description, see="user.see.description"),
    "blocked": Field(expr=User.blocked, kind=bool, see="user.see.block"),
    "language": Field(expr=User.language),
    "number_of_vms": Field(expr=_vm_count(), kind=int, see="user.see.vm-list"),
    "number_of_vms_connected": Field(
        expr=_vm_count("connected"), kind=int, see="user.see.vms-info"
    ),
    "properties": properties_field("user", User.id),
    **created_fields("user", User),
    **tenant_fields(User.tenant_id),
}


@cache
def _base() -> Any:
    """FROM and JOINs of the list (built once; statements are immutable)."""
    return select(literal(1)).select_from(User)


SPEC = ListSpec(
    object="user", fields=_FIELDS, base=_base, id_expr=User.id, scope=in_scope(User.tenant_id)
)


def _login(ctx: Ctx, tenant_id: int, name: str) -> str:
    if ctx.config.get_bool("model.user.login.case-sensitive", tenant_id):
        return name
    return name.lower()


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "user", ctx.principal)
    tenant_id = tenant_arg(args, ctx.session, ctx.principal, "user")
    name = _login(ctx, tenant_id, args.name(rule=LOGIN, required=True) or "")
    password = args.take("password", str, required=True)
    blocked = args.take("blocked", bool) or False
    description = args.text("description", max_len=32768, nullable=True)
    language = language_arg(args) or "auto"
    props, _ = property_args(args, "user", create=True)
    args.finish()
    user = User(
        tenant_id=tenant_id,
        login=name,
        password=hash_password(password),
        blocked=blocked,
        description=description,
        language=language,
        creation_admin_id=ctx.principal.admin_id,
    )
    ctx.session.add(user)
    ctx.session.flush()
    apply_properties(ctx.session, "user", user.id, tenant_id, props, [])
    return ActionResult(rows=[{"id": user.id}], affected=[(user.id, name)])


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(user_id: int) -> str | None:
        args = Args(req.arguments, "user", ctx.principal)
        user = ctx.session.get_one(User, user_id)
        if (name := args.name(rule=LOGIN)) is not None:
            user.login = _login(ctx, user.tenant_id, name)
        if (password := args.take("password", str, acl="user.update.password")) is not None:
            user.password = hash_password(password)
        if (blocked := args.take("blocked", bool, acl="user.update.block")) is not None:
            user.blocked = blocked
        if args.has("description"):
            user.description = args.text(
                "description", max_len=32768, acl="user.update.description", nullable=True
            )
        if (language := language_arg(args)) is not None:
            user.language = language
        props, deleted = property_args(args, "user", create=False)
        args.finish()
        apply_properties(ctx.session, "user", user_id, user.tenant_id, props, deleted)
        return user.login

    return for_each(ctx, SPEC, req.filters, work)


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(user_id: int) -> str | None:
        user = ctx.session.get_one(User, user_id)
        running = ctx.session.scalar(
            select(func.count())
            .select_from(Vm)
            .join(VmRuntime, VmRuntime.vm_id == Vm.id)
            .where(Vm.user_id == user_id, VmRuntime.vm_state != "stopped")
        )
        if running:
            raise Conflict(
                f"user {user.login!r} has {running} VM(s) not stopped; stop them first",
                Status.VM_RUNNING,
            )
        ctx.session.delete(user)
        return user.login

    return for_each(ctx, SPEC, req.filters, work)


def _state(ctx: Ctx, req: ActionRequest) -> ActionResult:
    ids = selected_ids(ctx, SPEC, req.filters)
    connected = set(
        ctx.session.scalars(
            select(Vm.user_id)
            .join(VmRuntime, VmRuntime.vm_id == Vm.id)
            .where(Vm.user_id.in_(ids), VmRuntime.user_state == "connected")
        )
    )
    rows = [{"id": i, "state": "connected" if i in connected else "disconnected"} for i in ids]
    return ActionResult(rows=rows, total=len(rows))


ACTIONS = (
    *crud_actions(
        "user", SPEC, see=("user.see-main.", r"^[a-z]+\.see\.user-list$"),
        create=_create, update=_update, delete=_delete,
    ),
    Action(name="user_get_state", qvd_object="user", type_of_action="see",
           acls=("user.see.vm-list-state", "user.see.vms-info"), handler=_state),
    *qvd_list_actions("user", SPEC, tiny=("user.see-main.", r"^vm\.(create\.|filter\.user)$")),
)  # fmt: skip
