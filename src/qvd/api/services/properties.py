"""Custom property keys (reference §1.2b): registered per tenant, then assigned to the
object types that may carry them (``__property_assign__`` on the property, or the
per-type actions below). ``property_get_list`` rows also carry ``property_id`` (the
id again) and ``in_user`` … ``in_di``: whether the key is assigned to that object type
(the WAT's properties screen reads them).

``<obj>_get_property_list`` / ``<obj>_create_property_list`` /
``<obj>_delete_property_list`` (obj in user, vm, host, osf, di) list, add and remove
the assignments of one object type (``qvd_object_properties_list``):

- list fields: ``id`` (the assignment), ``property_id``, ``key``, ``description``,
  ``qvd_object`` and, for superadmins, ``tenant_id`` / ``tenant_name``; filters,
  order and paging as in every list;
- create takes ``property_id``: a property in the caller's scope (7110 otherwise,
  whether it exists elsewhere or not), not yet assigned to this type (7210);
- delete acts on the assignments its filters select (``id`` or ``property_id``), and
  with them on every value of that key stored on objects of this type;
- ACLs: ``property.manage.`` to change, ``property.see-main.``, ``property.manage.``
  or ``<obj>.see.properties`` to list. Host properties are the superadmins' (4210 for
  anybody else); hosts are global, so a superadmin sees and assigns the properties
  of every tenant there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, and_, cast, delete, exists, func, literal, literal_column, select

from qvd.api.actions.core import (
    Action,
    ActionRequest,
    ActionResult,
    Args,
    Ctx,
    Handler,
    checked_name,
    for_each,
)
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.actions.principal import Principal
from qvd.api.errors import Conflict, Forbidden, InvalidRequest, NotFound, Status
from qvd.api.services.common import in_scope, list_action, tenant_arg, tenant_fields
from qvd.api.services.views import prune_property_views
from qvd.config.names import PROPERTY_KEY
from qvd.db.models import PROPERTY_OBJECTS, PropertyAssignment, PropertyDefinition

__all__ = ["ACTIONS", "SPEC", "assignment_spec"]

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


def _assigned_to(obj: str) -> Any:
    return (
        exists()
        .where(
            PropertyAssignment.property_id == PropertyDefinition.id,
            PropertyAssignment.qvd_object == obj,
        )
        .correlate(PropertyDefinition)
    )


SPEC = ListSpec(
    object="property",
    fields={
        "id": Field(expr=PropertyDefinition.id, kind=int),
        "property_id": Field(expr=PropertyDefinition.id, kind=int),
        **{f"in_{o}": Field(expr=_assigned_to(o), kind=bool) for o in PROPERTY_OBJECTS},
        "key": Field(expr=PropertyDefinition.key),
        "description": Field(expr=PropertyDefinition.description),
        "objects": Field(expr=_objects, kind=list, filterable=False),
        **tenant_fields(PropertyDefinition.tenant_id),
    },
    base=lambda: select(literal(1)).select_from(PropertyDefinition),
    id_expr=PropertyDefinition.id,
    scope=in_scope(PropertyDefinition.tenant_id),
)


def _managed(principal: Principal) -> tuple[str, ...]:
    """The object types whose property assignments the caller manages (host
    properties are the superadmins')."""
    if principal.superadmin:
        return PROPERTY_OBJECTS
    return tuple(o for o in PROPERTY_OBJECTS if o != "host")


def _objects_arg(args: Args, name: str, principal: Principal) -> list[str] | None:
    objs: list[Any] | None = args.take(name, list)
    if objs is None:
        return None
    bad = [o for o in objs if o not in PROPERTY_OBJECTS]
    if bad:
        raise InvalidRequest(
            f"property: {bad!r} are not object types ({', '.join(PROPERTY_OBJECTS)})", 6330
        )
    if any(o not in _managed(principal) for o in objs):
        raise Forbidden(
            "property: only superadmins may assign properties to hosts", Status.FORBIDDEN_ARGUMENT
        )
    return [str(o) for o in objs]


def _assign(ctx: Ctx, property_id: int, objects: list[str]) -> None:
    ctx.session.execute(delete(PropertyAssignment).where(
        PropertyAssignment.property_id == property_id,
        PropertyAssignment.qvd_object.not_in(objects),
        PropertyAssignment.qvd_object.in_(_managed(ctx.principal)),
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


def _key(args: Args, **kwargs: Any) -> str | None:
    key = args.text("key", max_len=PROPERTY_KEY.max_len, **kwargs)
    if key is None:
        return None
    return checked_name("property", "key", key, PROPERTY_KEY, Status.BAD_PROPERTY)


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "property", ctx.principal)
    # the supertenant holds the keys of hosts, which belong to no tenant
    tenant_id = tenant_arg(args, ctx.session, ctx.principal, "property", supertenant=True)
    prop = PropertyDefinition(
        tenant_id=tenant_id,
        key=_key(args, required=True),
        description=args.text("description", max_len=32768, nullable=True),
    )
    objects = _objects_arg(args, "__property_assign__", ctx.principal)
    args.finish()
    if not prop.key:
        raise InvalidRequest("property: the key cannot be empty", Status.BAD_PROPERTY)
    ctx.session.add(prop)
    ctx.session.flush()
    _assign(ctx, prop.id, objects if objects is not None else list(_managed(ctx.principal)))
    return ActionResult(rows=[{"id": prop.id}], affected=[(prop.id, prop.key)])


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(property_id: int) -> str | None:
        args = Args(req.arguments, "property", ctx.principal)
        prop = ctx.session.get_one(PropertyDefinition, property_id)
        if (key := _key(args)) is not None:
            prop.key = key
        if args.has("description"):
            prop.description = args.text("description", max_len=32768, nullable=True)
        objects = _objects_arg(args, "__property_assign__", ctx.principal)
        args.finish()
        if objects is not None:
            _assign(ctx, property_id, objects)
        return prop.key

    result = for_each(ctx, SPEC, req.filters, work)
    prune_property_views(ctx.session)
    return result


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(property_id: int) -> str | None:
        prop = ctx.session.get_one(PropertyDefinition, property_id)
        ctx.session.delete(prop)
        return prop.key

    result = for_each(ctx, SPEC, req.filters, work)
    prune_property_views(ctx.session)
    return result


# ---- assignments per object type (``<obj>_*_property_list``) -----------------------------
def assignment_spec(obj: str) -> ListSpec:
    """The property keys assigned to one object type, in the caller's scope."""
    tenant_scope = in_scope(PropertyDefinition.tenant_id)

    def scope(p: Principal) -> Any:
        mine = PropertyAssignment.qvd_object == obj
        return mine if obj == "host" else and_(mine, tenant_scope(p))

    return ListSpec(
        object=f"{obj} property",
        fields={
            "id": Field(expr=PropertyAssignment.id, kind=int),
            "property_id": Field(expr=PropertyAssignment.property_id, kind=int),
            "key": Field(expr=PropertyDefinition.key),
            "description": Field(expr=PropertyDefinition.description),
            "qvd_object": Field(expr=cast(PropertyAssignment.qvd_object, String)),
            **tenant_fields(PropertyDefinition.tenant_id),
        },
        base=lambda: (
            select(literal(1))
            .select_from(PropertyAssignment)
            .join(PropertyDefinition, PropertyDefinition.id == PropertyAssignment.property_id)
        ),
        id_expr=PropertyAssignment.id,
        scope=scope,
    )


def _superadmin_for_hosts(obj: str, principal: Principal) -> None:
    if obj == "host" and not principal.superadmin:
        raise Forbidden("host properties are managed by superadmins only", Status.FORBIDDEN_ACTION)


def _assignment_actions(obj: str) -> tuple[Action, ...]:
    spec = assignment_spec(obj)
    listing = list_action(spec)

    def get_list(ctx: Ctx, req: ActionRequest) -> ActionResult:
        _superadmin_for_hosts(obj, ctx.principal)
        return listing(ctx, req)

    def create(ctx: Ctx, req: ActionRequest) -> ActionResult:
        _superadmin_for_hosts(obj, ctx.principal)
        args = Args(req.arguments, f"{obj} property", ctx.principal)
        property_id: int = args.take("property_id", int, required=True)
        args.finish()
        stmt = select(PropertyDefinition).where(PropertyDefinition.id == property_id)
        if obj != "host":
            stmt = stmt.where(in_scope(PropertyDefinition.tenant_id)(ctx.principal))
        prop = ctx.session.scalars(stmt).first()
        if prop is None:
            raise NotFound(f"there is no property {property_id}", Status.MISSING_REFERENCE_ARG)
        taken = ctx.session.scalar(
            select(PropertyAssignment.id).where(
                PropertyAssignment.property_id == property_id,
                PropertyAssignment.qvd_object == obj,
            )
        )
        if taken is not None:
            raise Conflict(
                f"property {prop.key!r} is already assigned to {obj}s (assignment {taken})",
                Status.PROPERTY_CONFLICT,
            )
        assignment = PropertyAssignment(property_id=property_id, qvd_object=obj)
        ctx.session.add(assignment)
        ctx.session.flush()
        return ActionResult(rows=[{"id": assignment.id}], affected=[(assignment.id, prop.key)])

    def remove(ctx: Ctx, req: ActionRequest) -> ActionResult:
        _superadmin_for_hosts(obj, ctx.principal)

        def work(assignment_id: int) -> str | None:
            assignment = ctx.session.get_one(PropertyAssignment, assignment_id)
            key = ctx.session.scalar(
                select(PropertyDefinition.key).where(
                    PropertyDefinition.id == assignment.property_id
                )
            )
            ctx.session.delete(assignment)
            return key

        result = for_each(ctx, spec, req.filters, work)
        prune_property_views(ctx.session)
        return result

    def entry(verb: str, kind: str, acls: tuple[str, ...], handler: Handler) -> Action:
        return Action(name=f"{obj}_{verb}_property_list", qvd_object="property",
                      type_of_action=kind, acls=acls, handler=handler)  # fmt: skip

    see = ("property.see-main.", "property.manage.", f"{obj}.see.properties")
    return (
        entry("get", "see", see, get_list),
        entry("create", "create", ("property.manage.",), create),
        entry("delete", "delete", ("property.manage.",), remove),
    )


ACTIONS = (
    Action(name="property_get_list", qvd_object="property", type_of_action="see",
           acls=("property.see-main.", "property.manage."), handler=list_action(SPEC)),
    Action(name="property_create", qvd_object="property", type_of_action="create",
           acls=("property.manage.",), handler=_create),
    Action(name="property_update", qvd_object="property", type_of_action="update",
           acls=("property.manage.",), handler=_update),
    Action(name="property_delete", qvd_object="property", type_of_action="delete",
           acls=("property.manage.",), handler=_delete),
    *(a for obj in PROPERTY_OBJECTS for a in _assignment_actions(obj)),
)  # fmt: skip
