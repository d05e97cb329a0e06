"""WAT views (reference §5.3 "Views", §5.9 ``#views`` and ``#myviews``): which list
columns and filters the web admin shows for each kind of object, on desktop and
mobile screens.

- Tenant views are a tenant's defaults. ``tenant_view_get_list`` (ACL
  ``views.see-main.``) lists the rows a tenant stored; ``tenant_attribute_view_set``
  and ``tenant_property_view_set`` create or update one row; ``tenant_view_reset``
  deletes the rows its filters select (all of the tenant's rows without filters).
  Changing a row needs ``views.update.columns`` (list columns),
  ``views.update.filters-desktop`` or ``views.update.filters-mobile`` (filters).
  Everybody acts on their own tenant; superadmins may name another one with
  ``tenant_id`` (an argument of the set actions, a filter of the others), others get
  4230 / 4220 for trying.
- Administrator views are an administrator's own choices, over the tenant's
  defaults. They need no ACL (as in QVD): an administrator only ever touches their
  own rows. ``admin_view_get_list`` returns the *effective* view: the administrator's
  rows plus the tenant rows they do not override, each with ``source`` (``admin`` or
  ``tenant``). ``admin_view_reset`` deletes the administrator's own rows only.

A row names ``field``: for attribute views, a list field of ``qvd_object`` (a field of
that object's ``SPEC``); for property views, a custom property key registered for the
tenant (or globally) and assigned to that kind of object. Anything else is refused
with 6320 (6330 for property keys). Fields without a row are the WAT's own default.
Resetting when nothing matches answers 1300, as every other filtered action does.

``current_admin_setup`` (no ACL) tells the caller who they are: administrator and
tenant, languages, page sizes, effective ACLs and their effective views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, delete, literal, select, union_all
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from qvd.api.actions.core import Action, ActionRequest, ActionResult, Args, Ctx, Handler
from qvd.api.actions.listing import Field, ListQuery, ListSpec, coerce, run_list, select_ids
from qvd.api.actions.principal import GLOBAL_TENANT_ID, SUPERTENANT_ID, Principal
from qvd.api.errors import Forbidden, InvalidRequest, NotFound, Status
from qvd.api.services import administrators, dis, hosts, logs, osfs, roles, tenants, users, vms
from qvd.db.models import (
    DEVICE_TYPES,
    PROPERTY_OBJECTS,
    VIEW_OBJECTS,
    VIEW_TYPES,
    Administrator,
    AdministratorView,
    PropertyAssignment,
    PropertyDefinition,
    Tenant,
    TenantView,
)

__all__ = ["ACTIONS", "LIST_SPECS", "prune_property_views", "update_acl"]

LIST_SPECS: dict[str, ListSpec] = {
    "user": users.SPEC,
    "vm": vms.SPEC,
    "log": logs.SPEC,
    "host": hosts.SPEC,
    "osf": osfs.SPEC,
    "di": dis.SPEC,
    "role": roles.SPEC,
    "administrator": administrators.SPEC,
    "tenant": tenants.SPEC,
}
assert set(LIST_SPECS) == set(VIEW_OBJECTS)

_ORDER = [("qvd_object", False), ("view_type", False), ("device_type", False),
          ("property", False), ("field", False)]  # fmt: skip
_UNIQUE = ["qvd_object", "view_type", "device_type", "field", "property"]


def update_acl(view_type: str, device_type: str) -> str:
    """The ACL that changing a view of this kind needs."""
    if view_type == "list_column":
        return "views.update.columns"
    return f"views.update.filters-{device_type}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Setup:
    """The arguments of a ``*_view_set``: which column or filter, shown or not."""

    qvd_object: str
    view_type: str
    device_type: str
    field: str
    is_property: bool
    visible: bool

    def describe(self) -> str:
        kind = "property " if self.is_property else ""
        return f"{self.qvd_object} {self.view_type} ({self.device_type}): {kind}{self.field}"


def _choice(args: Args, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value: str | None = args.take(name, str, required=default is None)
    if value is None:
        assert default is not None
        return default
    if value not in choices:
        raise InvalidRequest(
            f"view: {name!r} must be one of {', '.join(choices)}, not {value!r}",
            Status.BAD_ARGUMENT_VALUE,
        )
    return value


def _setup_args(args: Args, *, is_property: bool) -> _Setup:
    qvd_object = _choice(args, "qvd_object", VIEW_OBJECTS)
    view_type = _choice(args, "view_type", VIEW_TYPES)
    device_type = _choice(args, "device_type", DEVICE_TYPES, "desktop")
    field = args.name("field", max_len=1024, required=True) or ""
    visible: bool = args.take("visible", bool, required=True)
    return _Setup(qvd_object=qvd_object, view_type=view_type, device_type=device_type,
                  field=field, is_property=is_property, visible=visible)  # fmt: skip


def _check_attribute(setup: _Setup) -> None:
    spec = LIST_SPECS[setup.qvd_object]
    found = spec.fields.get(setup.field)
    if found is None:
        known = ", ".join(sorted(spec.fields))
        raise InvalidRequest(
            f"view: {setup.qvd_object} has no list field {setup.field!r} (known: {known})",
            Status.BAD_ARGUMENT_VALUE,
        )
    if setup.view_type == "filter" and not found.filterable:
        raise InvalidRequest(
            f"view: the {setup.qvd_object} field {setup.field!r} cannot be filtered, so it "
            "cannot be a filter",
            Status.BAD_ARGUMENT_VALUE,
        )


def _check_property(session: Session, setup: _Setup, tenant_ids: list[int] | None) -> None:
    """The key must be registered (in ``tenant_ids``, or anywhere when None) and
    assigned to ``qvd_object``."""
    obj = setup.qvd_object
    if obj not in PROPERTY_OBJECTS:
        raise InvalidRequest(
            f"view: {obj} objects carry no custom properties (only {', '.join(PROPERTY_OBJECTS)})",
            Status.BAD_PROPERTY,
        )
    stmt = (
        select(PropertyAssignment.id)
        .join(PropertyDefinition, PropertyDefinition.id == PropertyAssignment.property_id)
        .where(PropertyDefinition.key == setup.field, PropertyAssignment.qvd_object == obj)
        .limit(1)
    )
    if tenant_ids is not None:
        stmt = stmt.where(PropertyDefinition.tenant_id.in_(tenant_ids))
    if session.scalar(stmt) is None:
        raise InvalidRequest(
            f"view: property {setup.field!r} is not registered for {obj}s in this tenant "
            "(create it with property_create and assign it first)",
            Status.BAD_PROPERTY,
        )


def prune_property_views(session: Session) -> None:
    """Delete the property views whose key is no longer registered and assigned to
    their kind of object for their tenant (after a property is deleted, renamed or
    unassigned): the same rule the set actions check."""
    session.flush()

    def resolvable(qvd_object: Any, field: Any, tenant_id: Any) -> Any:
        return (
            select(PropertyAssignment.id)
            .join(PropertyDefinition, PropertyDefinition.id == PropertyAssignment.property_id)
            .where(
                PropertyDefinition.key == field,
                cast(PropertyAssignment.qvd_object, String) == cast(qvd_object, String),
                (tenant_id == SUPERTENANT_ID)
                | PropertyDefinition.tenant_id.in_([tenant_id, GLOBAL_TENANT_ID]),
            )
            .correlate_except(PropertyAssignment, PropertyDefinition)
            .exists()
        )

    t, a = TenantView, AdministratorView
    session.execute(delete(t).where(t.is_property, ~resolvable(t.qvd_object, t.field, t.tenant_id)))
    admin_tenant = (
        select(Administrator.tenant_id)
        .where(Administrator.id == a.administrator_id)
        .correlate(a)
        .scalar_subquery()
    )
    session.execute(
        delete(a).where(a.is_property, ~resolvable(a.qvd_object, a.field, admin_tenant))
    )


def _check_setup(session: Session, setup: _Setup, property_tenant: int) -> None:
    if not setup.is_property:
        _check_attribute(setup)
        return
    tenant_ids = None if property_tenant == SUPERTENANT_ID else [property_tenant, GLOBAL_TENANT_ID]
    _check_property(session, setup, tenant_ids)


def _view_fields(table: Any) -> dict[str, Field]:
    return {
        "qvd_object": Field(expr=cast(table.qvd_object, String)),
        "view_type": Field(expr=cast(table.view_type, String)),
        "device_type": Field(expr=cast(table.device_type, String)),
        "field": Field(expr=table.field),
        "property": Field(expr=table.is_property, kind=bool),
        "visible": Field(expr=table.visible, kind=bool),
    }


def _list(ctx: Ctx, req: ActionRequest, spec: ListSpec, filters: Any) -> ActionResult:
    query = ListQuery(
        filters=filters, fields=req.fields, order_by=req.order_by or _ORDER, limit=req.limit,
        offset=req.offset, count=req.count,
    )  # fmt: skip
    total, rows = run_list(ctx.session, spec, ctx.principal, query)
    return ActionResult(rows=rows, total=total)


# ---- tenant views ---------------------------------------------------------------------------
def _tenant_spec(tenant_id: int) -> ListSpec:
    return ListSpec(
        object="tenant view",
        fields={
            "id": Field(expr=TenantView.id, kind=int),
            "tenant_id": Field(expr=TenantView.tenant_id, kind=int, filterable=False),
            **_view_fields(TenantView),
        },
        base=lambda: select(literal(1)).select_from(TenantView),
        id_expr=TenantView.id,
        scope=lambda _p: TenantView.tenant_id == tenant_id,
    )


def _filtered_tenant(p: Principal, filters: Any) -> tuple[int, Any]:
    """The tenant whose views a list or reset reads (``tenant_id`` filter: superadmins
    only) and the remaining filters."""
    if not isinstance(filters, dict) or "tenant_id" not in filters:
        return p.tenant_id, filters
    if not p.superadmin:
        raise Forbidden(
            "only superadmins may filter views by tenant_id (others see their own tenant's)",
            Status.FORBIDDEN_FILTER,
        )
    rest = dict(filters)
    wanted = rest.pop("tenant_id")
    if isinstance(wanted, dict) and list(wanted) == ["="]:
        wanted = wanted["="]
    tenant_id = coerce(int, wanted, "filter on 'tenant_id'")
    if tenant_id is None:
        raise InvalidRequest("filter on 'tenant_id' needs one tenant id", Status.BAD_FILTER_VALUE)
    return int(tenant_id), rest


def _target_tenant(ctx: Ctx, args: Args) -> int:
    """The tenant a set writes to: the caller's, or ``tenant_id`` (superadmins only)."""
    tenant_id: int | None = args.take("tenant_id", int, superadmin=True)
    if tenant_id is None:
        return ctx.principal.tenant_id
    if tenant_id < SUPERTENANT_ID or ctx.session.get(Tenant, tenant_id) is None:
        raise NotFound(f"view: there is no tenant {tenant_id}", Status.MISSING_REFERENCE_ARG)
    return tenant_id


def _tenant_get(ctx: Ctx, req: ActionRequest) -> ActionResult:
    tenant_id, filters = _filtered_tenant(ctx.principal, req.filters)
    return _list(ctx, req, _tenant_spec(tenant_id), filters)


def _tenant_set(is_property: bool) -> Handler:
    def handler(ctx: Ctx, req: ActionRequest) -> ActionResult:
        args = Args(req.arguments, "view", ctx.principal)
        tenant_id = _target_tenant(ctx, args)
        setup = _setup_args(args, is_property=is_property)
        args.finish()
        ctx.principal.require(
            update_acl(setup.view_type, setup.device_type),
            what=f"changing {setup.view_type} views ({setup.device_type})",
        )
        _check_setup(ctx.session, setup, tenant_id)
        stmt = insert(TenantView).values(
            tenant_id=tenant_id, qvd_object=setup.qvd_object, view_type=setup.view_type,
            device_type=setup.device_type, field=setup.field, is_property=setup.is_property,
            visible=setup.visible,
        )  # fmt: skip
        row_id = ctx.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant_id", *_UNIQUE], set_={"visible": setup.visible}
            ).returning(TenantView.id)
        ).scalar_one()
        return ActionResult(affected=[(row_id, f"tenant {tenant_id}: {setup.describe()}")])

    return handler


def _describe(row: TenantView | AdministratorView) -> str:
    return _Setup(
        qvd_object=row.qvd_object, view_type=row.view_type, device_type=row.device_type,
        field=row.field, is_property=row.is_property, visible=row.visible,
    ).describe()  # fmt: skip


def _tenant_reset(ctx: Ctx, req: ActionRequest) -> ActionResult:
    tenant_id, filters = _filtered_tenant(ctx.principal, req.filters)
    ids = select_ids(ctx.session, _tenant_spec(tenant_id), ctx.principal, filters)
    if not ids:
        raise NotFound("no tenant view matches the filters", Status.ZERO_SELECTED)
    rows = ctx.session.scalars(select(TenantView).where(TenantView.id.in_(ids))).all()
    for view_type, device_type in sorted({(r.view_type, r.device_type) for r in rows}):
        ctx.principal.require(
            update_acl(view_type, device_type),
            what=f"resetting {view_type} views ({device_type})",
        )
    affected: list[tuple[int | None, str | None]] = [
        (r.id, f"tenant {tenant_id}: {_describe(r)}") for r in rows
    ]
    ctx.session.execute(delete(TenantView).where(TenantView.id.in_(ids)))
    return ActionResult(affected=affected)


# ---- administrator views --------------------------------------------------------------------
def _own_spec(p: Principal) -> ListSpec:
    """The administrator's own rows (what a reset deletes)."""
    return ListSpec(
        object="admin view",
        fields={
            "id": Field(expr=AdministratorView.id, kind=int),
            **_view_fields(AdministratorView),
        },
        base=lambda: select(literal(1)).select_from(AdministratorView),
        id_expr=AdministratorView.id,
        scope=lambda _p: AdministratorView.administrator_id == p.admin_id,
    )


def _effective_spec(p: Principal) -> ListSpec:
    """The administrator's rows, plus the tenant rows they do not override."""
    a, t = AdministratorView, TenantView

    def columns(table: Any, source: str) -> list[Any]:
        fields = _view_fields(table)
        return [*(f.expr.label(n) for n, f in fields.items()), literal(source).label("source")]

    overridden = (
        select(a.id)
        .where(
            a.administrator_id == p.admin_id,
            a.qvd_object == t.qvd_object,
            a.view_type == t.view_type,
            a.device_type == t.device_type,
            a.field == t.field,
            a.is_property == t.is_property,
        )
        .correlate(t)
        .exists()
    )
    mine = select(*columns(a, "admin")).where(a.administrator_id == p.admin_id)
    inherited = select(*columns(t, "tenant")).where(t.tenant_id == p.tenant_id, ~overridden)
    v = union_all(mine, inherited).subquery("v")
    kinds = {"property": bool, "visible": bool}
    fields = {
        name: Field(expr=v.c[name], kind=kinds.get(name, str)) for name in [c.name for c in v.c]
    }
    return ListSpec(
        object="admin view",
        fields=fields,
        base=lambda: select(literal(1)).select_from(v),
        id_expr=v.c.source,
        scope=lambda _p: None,
    )


def _admin_get(ctx: Ctx, req: ActionRequest) -> ActionResult:
    return _list(ctx, req, _effective_spec(ctx.principal), req.filters)


def _current_admin_setup(ctx: Ctx, req: ActionRequest) -> ActionResult:
    p: Principal = ctx.principal
    tenant = ctx.session.get_one(Tenant, p.tenant_id)
    views = _list(ctx, ActionRequest(action=req.action), _effective_spec(p), None).rows
    row = {
        "admin_id": p.admin_id,
        "admin_name": p.admin_name,
        "tenant_id": p.tenant_id,
        "tenant_name": p.tenant_name,
        "admin_language": p.language,
        "tenant_language": tenant.language,
        "admin_block": p.block,
        "tenant_block": tenant.block,
        "acls": sorted(p.acls),
        "views": views,
        "superadmin": p.superadmin,
    }
    return ActionResult(rows=[row], total=1)


def _admin_set(is_property: bool) -> Handler:
    def handler(ctx: Ctx, req: ActionRequest) -> ActionResult:
        p = ctx.principal
        args = Args(req.arguments, "view", p)
        setup = _setup_args(args, is_property=is_property)
        args.finish()
        _check_setup(ctx.session, setup, p.tenant_id)
        stmt = insert(AdministratorView).values(
            administrator_id=p.admin_id, qvd_object=setup.qvd_object,
            view_type=setup.view_type, device_type=setup.device_type, field=setup.field,
            is_property=setup.is_property, visible=setup.visible,
        )  # fmt: skip
        row_id = ctx.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["administrator_id", *_UNIQUE], set_={"visible": setup.visible}
            ).returning(AdministratorView.id)
        ).scalar_one()
        return ActionResult(affected=[(row_id, f"{p.admin_name}: {setup.describe()}")])

    return handler


def _admin_reset(ctx: Ctx, req: ActionRequest) -> ActionResult:
    p = ctx.principal
    ids = select_ids(ctx.session, _own_spec(p), p, req.filters)
    if not ids:
        raise NotFound("none of your own views matches the filters", Status.ZERO_SELECTED)
    rows = ctx.session.scalars(select(AdministratorView).where(AdministratorView.id.in_(ids)))
    affected: list[tuple[int | None, str | None]] = [
        (r.id, f"{p.admin_name}: {_describe(r)}") for r in rows
    ]
    ctx.session.execute(delete(AdministratorView).where(AdministratorView.id.in_(ids)))
    return ActionResult(affected=affected)


_UPDATE = (r"^views\.update\.",)

ACTIONS = (
    Action(name="tenant_view_get_list", qvd_object="tenant_view", type_of_action="see",
           acls=("views.see-main.",), handler=_tenant_get),
    Action(name="tenant_attribute_view_set", qvd_object="tenant_view",
           type_of_action="create_or_update", acls=_UPDATE, handler=_tenant_set(False)),
    Action(name="tenant_property_view_set", qvd_object="tenant_view",
           type_of_action="create_or_update", acls=_UPDATE, handler=_tenant_set(True)),
    Action(name="tenant_view_reset", qvd_object="tenant_view", type_of_action="delete",
           acls=_UPDATE, handler=_tenant_reset),
    Action(name="admin_view_get_list", qvd_object="admin_view", type_of_action="see",
           acls=(), handler=_admin_get),
    Action(name="admin_attribute_view_set", qvd_object="admin_view",
           type_of_action="create_or_update", acls=(), handler=_admin_set(False)),
    Action(name="admin_property_view_set", qvd_object="admin_view",
           type_of_action="create_or_update", acls=(), handler=_admin_set(True)),
    Action(name="admin_view_reset", qvd_object="admin_view", type_of_action="delete",
           acls=(), handler=_admin_reset),
    Action(name="current_admin_setup", qvd_object="administrator", type_of_action="see",
           acls=(), handler=_current_admin_setup),
)  # fmt: skip
