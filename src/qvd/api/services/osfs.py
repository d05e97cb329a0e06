"""OSFs (operating system flavours): what VMs and DIs of one kind share."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import func, literal, select

from qvd.api.actions.core import ActionRequest, ActionResult, Args, Ctx, for_each
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.errors import Conflict, InvalidRequest, Status
from qvd.api.services.common import (
    apply_properties,
    created_fields,
    crud_actions,
    in_scope,
    properties_field,
    property_args,
    qvd_list_actions,
    tenant_arg,
    tenant_fields,
)
from qvd.config.names import OSF_NAME
from qvd.db.models import Di, Osf, Vm

__all__ = ["ACTIONS", "SPEC"]


def _count(model: Any) -> Any:
    return (
        select(func.count())
        .select_from(model)
        .where(model.osf_id == Osf.id)
        .correlate(Osf)
        .scalar_subquery()
    )


_FIELDS: dict[str, Field] = {
    "id": Field(expr=Osf.id, kind=int, see="osf.see.id"),
    "name": Field(expr=Osf.name),
    "description": Field(expr=Osf.description, see="osf.see.description"),
    "overlay": Field(expr=Osf.use_overlay, kind=bool, see="osf.see.overlay"),
    "user_storage": Field(expr=Osf.user_storage_size, kind=int, see="osf.see.user-storage"),
    "memory": Field(expr=Osf.memory, kind=int, see="osf.see.memory"),
    "is_application": Field(expr=Osf.is_application, kind=bool),
    "osd_id": Field(expr=Osf.osd_id, kind=int, default=False),
    "number_of_vms": Field(expr=_count(Vm), kind=int, see="osf.see.vm-list"),
    "number_of_dis": Field(expr=_count(Di), kind=int, see="osf.see.di-list"),
    "properties": properties_field("osf", Osf.id),
    **created_fields("osf", Osf),
    **tenant_fields(Osf.tenant_id),
}


@cache
def _base() -> Any:
    """FROM and JOINs of the list (built once; statements are immutable)."""
    return select(literal(1)).select_from(Osf)


SPEC = ListSpec(
    object="osf", fields=_FIELDS, base=_base, id_expr=Osf.id, scope=in_scope(Osf.tenant_id)
)


def _memory(args: Args, acl: str) -> int | None:
    memory: int | None = args.take("memory", int, acl=acl)
    if memory is not None and memory <= 0:
        raise InvalidRequest(f"osf: memory must be a positive number of MB, not {memory}", 6320)
    return memory


def _storage(args: Args, acl: str) -> int | None:
    size: int | None = args.take("user_storage", int, acl=acl)
    if size is not None and size < 0:
        raise InvalidRequest(f"osf: user_storage cannot be negative ({size})", 6320)
    return size


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "osf", ctx.principal)
    tenant_id = tenant_arg(args, ctx.session, ctx.principal, "osf")
    name = args.name(rule=OSF_NAME, required=True)
    memory = _memory(args, "osf.create.memory") or ctx.config.get_int("osf.default.memory")
    storage = _storage(args, "osf.create.user-storage")
    overlay = args.take("overlay", bool)
    is_app = args.take("is_application", bool)
    description = args.text("description", max_len=32768, nullable=True)
    osd_id = args.take("osd_id", int, nullable=True)
    props, _ = property_args(args, "osf", create=True)
    args.finish()
    osf = Osf(
        tenant_id=tenant_id,
        name=name,
        memory=memory,
        user_storage_size=storage or 0,
        use_overlay=ctx.config.get_bool("osf.default.overlay") if overlay is None else overlay,
        is_application=(
            ctx.config.get_bool("osf.default.is_application") if is_app is None else is_app
        ),
        description=description,
        osd_id=osd_id,
        creation_admin_id=ctx.principal.admin_id,
    )
    ctx.session.add(osf)
    ctx.session.flush()
    apply_properties(ctx.session, "osf", osf.id, tenant_id, props, [])
    return ActionResult(rows=[{"id": osf.id}], affected=[(osf.id, name)])


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(osf_id: int) -> str | None:
        args = Args(req.arguments, "osf", ctx.principal)
        osf = ctx.session.get_one(Osf, osf_id)
        if (name := args.name(rule=OSF_NAME, acl="osf.update.name")) is not None:
            osf.name = name
        if (memory := _memory(args, "osf.update.memory")) is not None:
            osf.memory = memory
        if (storage := _storage(args, "osf.update.user-storage")) is not None:
            osf.user_storage_size = storage
        if (overlay := args.take("overlay", bool)) is not None:
            osf.use_overlay = overlay
        if (is_app := args.take("is_application", bool)) is not None:
            osf.is_application = is_app
        if args.has("description"):
            osf.description = args.text(
                "description", max_len=32768, acl="osf.update.description", nullable=True
            )
        if args.has("osd_id"):
            osf.osd_id = args.take("osd_id", int, nullable=True)
        props, deleted = property_args(args, "osf", create=False)
        args.finish()
        apply_properties(ctx.session, "osf", osf_id, osf.tenant_id, props, deleted)
        return osf.name

    return for_each(ctx, SPEC, req.filters, work)


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(osf_id: int) -> str | None:
        osf = ctx.session.get_one(Osf, osf_id)
        vms = ctx.session.scalar(select(func.count()).select_from(Vm).where(Vm.osf_id == osf_id))
        dis = ctx.session.scalar(select(func.count()).select_from(Di).where(Di.osf_id == osf_id))
        if vms or dis:
            raise Conflict(
                f"OSF {osf.name!r} still has {vms} VM(s) and {dis} DI(s); delete them first",
                Status.HAS_DEPENDENTS,
            )
        ctx.session.delete(osf)
        return osf.name

    return for_each(ctx, SPEC, req.filters, work)


ACTIONS = (
    *crud_actions(
        "osf", SPEC, see=("osf.see-main.", r"^[a-z]+\.see\.osf-list$"),
        create=_create, update=_update, delete=_delete,
    ),
    *qvd_list_actions(
        "osf", SPEC, tiny=("osf.see-main.", r"^(di|vm)\.(create\.|filter\.osf)$")
    ),
)  # fmt: skip
