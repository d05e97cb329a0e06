"""Pieces shared by the object services: tenant fields and scope, creation fields,
custom properties (reference §1.2b)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, aliased

from qvd.api.actions.core import (
    Action,
    ActionRequest,
    ActionResult,
    Args,
    Ctx,
    Handler,
    checked_name,
)
from qvd.api.actions.listing import Expr, Field, ListQuery, ListSpec, run_list, select_ids
from qvd.api.actions.principal import GLOBAL_TENANT_ID, Principal
from qvd.api.errors import Forbidden, InvalidRequest, NotFound, Status
from qvd.config.names import PROPERTY_KEY, PROPERTY_VALUE
from qvd.db.models import (
    LANGUAGES,
    Administrator,
    DiProperty,
    HostProperty,
    OsfProperty,
    PropertyAssignment,
    PropertyDefinition,
    Tenant,
    UserProperty,
    VmProperty,
)

__all__ = [
    "PROPERTY_TABLES",
    "apply_properties",
    "block_arg",
    "created_fields",
    "crud_actions",
    "in_scope",
    "language_arg",
    "list_action",
    "one",
    "properties_field",
    "property_args",
    "qvd_list_actions",
    "tenant_arg",
    "tenant_fields",
    "tiny_action",
]

PROPERTY_TABLES: dict[str, Any] = {
    "user": UserProperty,
    "vm": VmProperty,
    "host": HostProperty,
    "osf": OsfProperty,
    "di": DiProperty,
}


def tenant_fields(tenant_id: Expr) -> dict[str, Field]:
    """``tenant_id`` and ``tenant_name``: superadmins only (others see one tenant)."""
    name = (
        select(Tenant.name).where(Tenant.id == tenant_id).correlate_except(Tenant).scalar_subquery()
    )
    return {
        "tenant_id": Field(expr=tenant_id, kind=int, superadmin_only=True),
        "tenant_name": Field(expr=name, kind=str, superadmin_only=True),
    }


def created_fields(obj: str, table: Any) -> dict[str, Field]:
    # an alias: for administrators the creator is another row of the same table
    creator_row = aliased(Administrator)
    creator = (
        select(creator_row.name)
        .where(creator_row.id == table.creation_admin_id)
        .correlate_except(creator_row)
        .scalar_subquery()
    )
    return {
        "creation_date": Field(
            expr=table.creation_date, kind=dt.datetime, see=f"{obj}.see.creation-date"
        ),
        "creation_admin_id": Field(
            expr=table.creation_admin_id, kind=int, see=f"{obj}.see.created-by"
        ),
        "creation_admin_name": Field(expr=creator, kind=str, see=f"{obj}.see.created-by"),
    }


def properties_field(obj: str, object_id: Expr) -> Field:
    table = PROPERTY_TABLES[obj]
    id_col = getattr(table, f"{obj}_id")
    agg = (
        select(
            func.coalesce(
                func.jsonb_object_agg(PropertyDefinition.key, table.value),
                literal_column("'{}'::jsonb"),
            )
        )
        .select_from(table)
        .join(PropertyAssignment, PropertyAssignment.id == table.property_id)
        .join(PropertyDefinition, PropertyDefinition.id == PropertyAssignment.property_id)
        .where(id_col == object_id)
        .correlate_except(table, PropertyAssignment, PropertyDefinition)
        .scalar_subquery()
    )
    return Field(expr=agg, kind=dict, see=f"{obj}.see.properties", filterable=False)


def in_scope(
    tenant_col: Expr,
) -> Callable[[Principal], Any]:
    def scope(p: Principal) -> Any:
        if p.superadmin:
            return tenant_col != GLOBAL_TENANT_ID
        return tenant_col == p.tenant_id

    return scope


def tenant_arg(
    args: Args,
    session: Session,
    principal: Principal,
    obj: str,
    *,
    supertenant: bool = False,
    default_own: bool = False,
) -> int:
    """The tenant a new object goes to: the caller's, or ``tenant_id`` for superadmins
    (who must say which unless ``default_own`` lets them mean their own; the
    supertenant 0 only where ``supertenant`` allows it)."""
    if not principal.superadmin:
        if args.has("tenant_id"):
            raise Forbidden(
                f"{obj}: only superadmins may give 'tenant_id'", Status.FORBIDDEN_ARGUMENT
            )
        return principal.tenant_id
    tenant_id: int | None = args.take("tenant_id", int)
    if tenant_id is None:
        if default_own:
            return principal.tenant_id
        raise InvalidRequest(
            f"{obj}: superadmins must say which tenant ('tenant_id') the {obj} belongs to",
            Status.MISSING_ARGUMENT,
        )
    lowest = 0 if supertenant else 1
    if tenant_id < lowest or session.get(Tenant, tenant_id) is None:
        raise NotFound(f"{obj}: there is no tenant {tenant_id}", Status.MISSING_REFERENCE_ARG)
    return tenant_id


def block_arg(args: Args, obj: str, acl: str | None = None) -> int | None:
    """The ``block`` argument (a WAT page size, 1..10000), if given."""
    block: int | None = args.take("block", int, acl=acl)
    if block is not None and not 1 <= block <= 10000:
        raise InvalidRequest(f"{obj}: block (page size) must be 1..10000, not {block}", 6320)
    return block


def apply_properties(
    session: Session,
    obj: str,
    object_id: int,
    tenant_id: int | None,
    set_values: dict[str, Any],
    delete_keys: list[Any],
) -> None:
    """Set and delete custom property values of one object; a key must first be
    registered for the tenant (or globally) and assigned to this kind of object."""
    table = PROPERTY_TABLES[obj]
    id_col = getattr(table, f"{obj}_id")

    def assignment(key: Any) -> int:
        if not isinstance(key, str) or not key:
            raise InvalidRequest(f"{obj}: a property key must be text", Status.BAD_PROPERTY)
        checked_name(obj, "property key", key, PROPERTY_KEY, Status.BAD_PROPERTY)
        stmt = (
            select(PropertyAssignment.id)
            .join(PropertyDefinition, PropertyDefinition.id == PropertyAssignment.property_id)
            .where(PropertyDefinition.key == key, PropertyAssignment.qvd_object == obj)
            .limit(1)
        )
        if tenant_id is None:
            # objects of no tenant (hosts): any key a superadmin assigned to them, the
            # supertenant's first (only superadmins assign keys to hosts)
            stmt = stmt.order_by(PropertyDefinition.tenant_id)
        else:
            stmt = stmt.where(
                PropertyDefinition.tenant_id.in_([tenant_id, GLOBAL_TENANT_ID])
            ).order_by(PropertyDefinition.tenant_id.desc())
        found = session.scalar(stmt)
        if found is None:
            raise InvalidRequest(
                f"{obj}: property {key!r} is not registered for {obj}s in this tenant "
                "(create it with property_create and assign it first)",
                Status.BAD_PROPERTY,
            )
        return int(found)

    for key, value in set_values.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InvalidRequest(f"{obj}: property {key!r} needs a text value", 6330)
        checked_name(obj, f"property {key!r}", str(value), PROPERTY_VALUE, Status.BAD_PROPERTY)
        pid = assignment(key)
        stmt = insert(table).values(
            {f"{obj}_id": object_id, "property_id": pid, "value": str(value)}
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[id_col.key, "property_id"], set_={"value": str(value)}
            )
        )
    for key in delete_keys:
        pid = assignment(key)
        session.execute(delete(table).where(and_(id_col == object_id, table.property_id == pid)))


def property_args(args: Args, obj: str, *, create: bool) -> tuple[dict[str, Any], list[Any]]:
    """``__properties__`` (create) or ``__properties_changes__`` (update)."""
    acl = f"{obj}.create.properties" if create else f"{obj}.update.properties"
    if create:
        values: dict[str, Any] | None = args.take("__properties__", dict, acl=acl)
        return (values or {}), []
    changes: dict[str, Any] | None = args.take("__properties_changes__", dict, acl=acl)
    if not changes:
        return {}, []
    set_values = changes.get("set") or {}
    deleted = changes.get("delete") or []
    if not isinstance(set_values, dict) or not isinstance(deleted, list):
        raise InvalidRequest(
            f"{obj}: __properties_changes__ is {{set: {{key: value}}, delete: [keys]}}",
            Status.BAD_ARGUMENT_VALUE,
        )
    return set_values, deleted


def crud_actions(
    obj: str,
    spec: ListSpec,
    *,
    see: tuple[str, ...],
    create: Handler,
    update: Handler,
    delete: Handler,
) -> tuple[Action, ...]:
    """The four catalogue entries every object has: ``<obj>_get_list`` (ACLs ``see``),
    ``<obj>_create`` (``<obj>.create.``), ``<obj>_update`` (any ``<obj>.update.*``) and
    ``<obj>_delete`` (``<obj>.delete.``)."""

    def entry(verb: str, kind: str, acls: tuple[str, ...], handler: Handler) -> Action:
        return Action(name=f"{obj}_{verb}", qvd_object=obj, type_of_action=kind, acls=acls,
                      handler=handler)  # fmt: skip

    return (
        entry("get_list", "see", see, list_action(spec)),
        entry("create", "create", (f"{obj}.create.",), create),
        entry("update", "update", (rf"^{obj}\.update\.",), update),
        entry("delete", "delete", (f"{obj}.delete.",), delete),
    )


def list_action(spec: ListSpec) -> Handler:
    """The ``<object>_get_list`` handler of a spec."""

    def handler(ctx: Ctx, req: ActionRequest) -> ActionResult:
        query = ListQuery(
            filters=req.filters,
            fields=req.fields,
            order_by=req.order_by,
            limit=req.limit,
            offset=req.offset,
            count=req.count,
        )
        total, rows = run_list(ctx.session, spec, ctx.principal, query)
        return ActionResult(rows=rows, total=total)

    return handler


def tiny_action(spec: ListSpec, name_field: str = "name") -> Handler:
    """A ``<object>_tiny_list`` handler: rows ``{id, name}`` of what the filters select,
    by name (drop-downs)."""

    def handler(ctx: Ctx, req: ActionRequest) -> ActionResult:
        query = ListQuery(
            filters=req.filters,
            fields=["id", name_field],
            order_by=req.order_by or [(name_field, False)],
            limit=req.limit,
            offset=req.offset,
        )
        total, rows = run_list(ctx.session, spec, ctx.principal, query)
        return ActionResult(
            rows=[{"id": r["id"], "name": r[name_field]} for r in rows], total=total
        )

    return handler


def all_ids_action(spec: ListSpec) -> Handler:
    """A ``<object>_all_ids`` handler: rows ``{id}`` of every object the filters select,
    unpaged (the WAT's "select all" across pages)."""

    def handler(ctx: Ctx, req: ActionRequest) -> ActionResult:
        ids = select_ids(ctx.session, spec, ctx.principal, req.filters)
        return ActionResult(rows=[{"id": i} for i in ids], total=len(ids))

    return handler


def qvd_list_actions(
    obj: str,
    spec: ListSpec,
    *,
    tiny: tuple[str, ...],
    name_field: str = "name",
) -> tuple[Action, ...]:
    """QVD's other read actions of an object: ``<obj>_get_details`` (the list of one
    object, ACL ``<obj>.see-details.``), ``<obj>_tiny_list`` (ids and names, ACLs
    ``tiny``) and ``<obj>_all_ids`` (``<obj>.see-main.`` or a mass action's ACL)."""

    def entry(verb: str, acls: tuple[str, ...], handler: Handler) -> Action:
        return Action(name=f"{obj}_{verb}", qvd_object=obj, type_of_action="see", acls=acls,
                      handler=handler)  # fmt: skip

    return (
        entry("get_details", (f"{obj}.see-details.",), list_action(spec)),
        entry("tiny_list", tiny, tiny_action(spec, name_field)),
        entry("all_ids", (f"{obj}.see-main.", rf"^{obj}\.[^.]+-massive\."), all_ids_action(spec)),
    )


def one(session: Session, stmt: Any, what: str) -> Any:
    """The single row of ``stmt`` or a 7110 error naming ``what``."""
    found = session.execute(stmt).first()
    if found is None:
        raise NotFound(f"{what} does not exist", Status.MISSING_REFERENCE_ARG)
    return found


def language_arg(args: Args, acl: str | None = None) -> str | None:
    lang: str | None = args.take("language", str, acl=acl)
    if lang is not None and lang not in LANGUAGES:
        raise InvalidRequest(f"language must be one of {', '.join(LANGUAGES)}", 6320)
    return lang
