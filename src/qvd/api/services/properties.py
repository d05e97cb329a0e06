"""Custom property keys (reference §1.2b): registered per tenant, then assigned to the
object types that may carry them (``__property_assign__``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, delete, func, literal, literal_column, select

from qvd.api.core import Action, ActionRequest, ActionResult, Args, Ctx, for_each
from qvd.api.errors import InvalidRequest, Status
from qvd.api.listing import Field, ListSpec
from qvd.api.services.common import in_scope, list_action, tenant_arg, tenant_fields
from qvd.db.models import PROPERTY_OBJECTS, PropertyAssignment, PropertyDefinition

__all__ = ["ACTIONS", "SPEC"]

_objects = (
    select(
        func.coalesce(
            func.array_agg(cast(PropertyAssignment.qvd_object, String)),
            literal_column("'{}'::varchar[]"),
        )
    )
    .where(PropertyAssignment.property_id == PropertyDefinition.id)
    .correlate(PropertyDefinition)
    .scalar_subquery()
)

SPEC = ListSpec(
    object="property",
    fields={
        "id": Field(expr=PropertyDefinition.id, kind=int),
        "key": Field(expr=PropertyDefinition.key),
        "description": Field(expr=PropertyDefinition.description),
        "objects": Field(expr=_objects, kind=list, filterable=False),
        **tenant_fields(PropertyDefinition.tenant_id),
    },
    base=lambda: select(literal(1)).select_from(PropertyDefinition),
    id_expr=PropertyDefinition.id,
    scope=in_scope(PropertyDefinition.tenant_id),
)


def _objects_arg(args: Args, name: str) -> list[str] | None:
    objs: list[Any] | None = args.take(name, list)
    if objs is None:
        return None
    bad = [o for o in objs if o not in PROPERTY_OBJECTS]
    if bad:
        raise InvalidRequest(
            f"property: {bad!r} are not object types ({', '.join(PROPERTY_OBJECTS)})", 6330
        )
    return [str(o) for o in objs]


def _assign(ctx: Ctx, property_id: int, objects: list[str]) -> None:
    ctx.session.execute(delete(PropertyAssignment).where(
        PropertyAssignment.property_id == property_id,
        PropertyAssignment.qvd_object.not_in(objects),
    ))  # fmt: skip
    have = set(
        ctx.session.scalars(
            select(PropertyAssignment.qvd_object).where(
                PropertyAssignment.property_id == property_id
            )
        )
    )
    for obj in objects:
        if obj not in have:
            ctx.session.add(PropertyAssignment(property_id=property_id, qvd_object=obj))
    ctx.session.flush()


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "property", ctx.principal)
    tenant_id = tenant_arg(args, ctx.session, ctx.principal, "property")
    prop = PropertyDefinition(
        tenant_id=tenant_id,
        key=args.text("key", max_len=1024, required=True),
        description=args.text("description", max_len=32768, nullable=True),
    )
    objects = _objects_arg(args, "__property_assign__")
    args.finish()
    if not prop.key:
        raise InvalidRequest("property: the key cannot be empty", Status.BAD_PROPERTY)
    ctx.session.add(prop)
    ctx.session.flush()
    _assign(ctx, prop.id, objects if objects is not None else list(PROPERTY_OBJECTS))
    return ActionResult(rows=[{"id": prop.id}], affected=[(prop.id, prop.key)])


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(property_id: int) -> str | None:
        args = Args(req.arguments, "property", ctx.principal)
        prop = ctx.session.get_one(PropertyDefinition, property_id)
        if (key := args.text("key", max_len=1024)) is not None:
            prop.key = key
        if args.has("description"):
            prop.description = args.text("description", max_len=32768, nullable=True)
        objects = _objects_arg(args, "__property_assign__")
        args.finish()
        if objects is not None:
            _assign(ctx, property_id, objects)
        return prop.key

    return for_each(ctx, SPEC, req.filters, work)


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(property_id: int) -> str | None:
        prop = ctx.session.get_one(PropertyDefinition, property_id)
        ctx.session.delete(prop)
        return prop.key

    return for_each(ctx, SPEC, req.filters, work)


ACTIONS = (
    Action(name="property_get_list", qvd_object="property", type_of_action="see",
           acls=("property.see-main.", "property.manage."), handler=list_action(SPEC)),
    Action(name="property_create", qvd_object="property", type_of_action="create",
           acls=("property.manage.",), handler=_create),
    Action(name="property_update", qvd_object="property", type_of_action="update",
           acls=("property.manage.",), handler=_update),
    Action(name="property_delete", qvd_object="property", type_of_action="delete",
           acls=("property.manage.",), handler=_delete),
)  # fmt: skip
