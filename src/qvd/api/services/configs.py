"""Configuration tokens in the database (``configs``; tenant -1 is global).

- ``config_get`` lists every declared token with its default, the value the
  database sets (``operative_value``) and ``is_default``; superadmins see the global
  layer unless they filter on ``tenant_id``; tenant administrators see the tokens a
  tenant may override, with their tenant's values.
- ``config_set`` checks the token exists (7382 otherwise) and its value's type;
  node-local tokens (``nodename``, ``database.*``) cannot be set (7370); tenant
  administrators may set only per-tenant tokens, for their tenant (4230). Turning
  ``wat.multitenant`` off with more than one tenant is refused (7373).
- ``config_delete`` resets a token to its default (7390 if it already is).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, String, and_, column, delete, func, literal, select, values
from sqlalchemy.dialects.postgresql import insert

from qvd.api.core import Action, ActionRequest, ActionResult, Args, Ctx
from qvd.api.errors import Conflict, Forbidden, InvalidRequest, NotFound, Status
from qvd.api.listing import Field, ListQuery, ListSpec, run_list
from qvd.api.principal import GLOBAL_TENANT_ID, Principal
from qvd.config import TOKENS
from qvd.config.tokens import find_family, lookup
from qvd.config.values import check_value
from qvd.db.models import Config as ConfigRow
from qvd.db.models import Tenant

__all__ = ["ACTIONS"]

_NODE_LOCAL = ("nodename", "database.", "path.database")
_tokens = values(
    column("key", String), column("default_value", String), column("per_tenant", Boolean),
    name="tokens",
).data([(t.name, t.default, t.per_tenant) for t in TOKENS])  # fmt: skip


def _tenant_of(p: Principal, filters: Any) -> int:
    wanted = filters.get("tenant_id") if isinstance(filters, dict) else None
    if wanted is None:
        return GLOBAL_TENANT_ID if p.superadmin else p.tenant_id
    if not p.superadmin:
        raise Forbidden("only superadmins may filter configs by tenant_id", 4220)
    if isinstance(wanted, dict) and len(wanted) == 1 and "=" in wanted:
        wanted = wanted["="]
    try:
        return int(wanted)
    except (TypeError, ValueError):
        raise InvalidRequest(f"tenant_id filter {wanted!r} is not a tenant id", 6310) from None


def _spec(tenant_id: int, p: Principal) -> ListSpec:
    rows = select(ConfigRow.key, ConfigRow.value).where(ConfigRow.tenant_id == tenant_id)
    c = rows.subquery("c")
    key = func.coalesce(_tokens.c.key, c.c.key)
    fields = {
        "key": Field(expr=key),
        "operative_value": Field(expr=func.coalesce(c.c.value, _tokens.c.default_value)),
        "default_value": Field(expr=_tokens.c.default_value),
        "is_default": Field(expr=c.c.value.is_(None), kind=bool),
        "tenant_id": Field(expr=literal(tenant_id), kind=int, filterable=False),
    }

    def scope(principal: Principal) -> Any:
        hidden = and_(*(~key.startswith(prefix) for prefix in _NODE_LOCAL))
        if principal.superadmin and tenant_id == GLOBAL_TENANT_ID:
            return hidden
        return hidden & func.coalesce(_tokens.c.per_tenant, literal(True))

    return ListSpec(
        object="config",
        fields=fields,
        base=lambda: select(literal(1)).select_from(
            _tokens.join(c, c.c.key == _tokens.c.key, full=True)
        ),
        id_expr=key,
        scope=scope,
    )


def _get(ctx: Ctx, req: ActionRequest) -> ActionResult:
    tenant_id = _tenant_of(ctx.principal, req.filters)
    filters = dict(req.filters) if isinstance(req.filters, dict) else req.filters
    if isinstance(filters, dict):
        filters.pop("tenant_id", None)
    query = ListQuery(
        filters=filters, fields=req.fields, order_by=req.order_by or [("key", False)],
        limit=req.limit, offset=req.offset,
    )  # fmt: skip
    total, rows = run_list(ctx.session, _spec(tenant_id, ctx.principal), ctx.principal, query)
    return ActionResult(rows=rows, total=total)


def _target(ctx: Ctx, args: Args) -> int:
    tenant_id: int | None = args.take("tenant_id", int)
    p = ctx.principal
    if tenant_id is None:
        return GLOBAL_TENANT_ID if p.superadmin else p.tenant_id
    if not p.superadmin and tenant_id != p.tenant_id:
        raise Forbidden("only superadmins may set another tenant's configuration", 4230)
    if tenant_id != GLOBAL_TENANT_ID and (
        tenant_id <= 0 or ctx.session.get(Tenant, tenant_id) is None
    ):
        raise NotFound(f"config: there is no tenant {tenant_id}", 7110)
    return tenant_id


def _check_key(ctx: Ctx, key: str, tenant_id: int) -> None:
    if key.startswith(_NODE_LOCAL):
        raise Conflict(f"{key!r} is node-local: set it in node.conf, not the database", 7370)
    token = lookup(key)
    family = find_family(key)
    if token is None and family is None:
        raise InvalidRequest(f"there is no configuration token {key!r}", Status.NEW_CONFIG_TOKEN)
    per_tenant = token.per_tenant if token is not None else bool(family and family.per_tenant)
    if tenant_id != GLOBAL_TENANT_ID and not per_tenant:
        raise Forbidden(f"{key!r} is global: it cannot be set per tenant", 4230)


def _set(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "config", ctx.principal)
    key = args.text("key", max_len=64, required=True) or ""
    value = args.text("value", max_len=4096, required=True) or ""
    tenant_id = _target(ctx, args)
    args.finish()
    _check_key(ctx, key, tenant_id)
    token = lookup(key)
    family = find_family(key)
    kind = token.kind if token is not None else family.kind if family is not None else None
    if kind is not None:
        try:
            check_value(kind, value)
        except ValueError as exc:
            raise InvalidRequest(f"{key}: {exc}", 6320) from None
    if key == "wat.multitenant" and value.strip().lower() in {"0", "false", "no", "off"}:
        tenants = ctx.session.scalar(select(func.count()).select_from(Tenant).where(Tenant.id > 0))
        if (tenants or 0) > 1:
            raise Conflict(
                f"cannot switch to monotenant mode with {tenants} tenants", Status.MONOTENANT
            )
    stmt = insert(ConfigRow).values(tenant_id=tenant_id, key=key, value=value)
    ctx.session.execute(
        stmt.on_conflict_do_update(index_elements=["tenant_id", "key"], set_={"value": value})
    )
    return ActionResult(affected=[(None, f"{key}@{tenant_id}")])


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    filters = req.filters if isinstance(req.filters, dict) else {}
    key = filters.get("key")
    if isinstance(key, dict) and "=" in key:
        key = key["="]
    if not isinstance(key, str):
        raise InvalidRequest("config_delete needs a key filter", Status.MISSING_FILTER)
    args = Args({"tenant_id": filters["tenant_id"]} if "tenant_id" in filters else {}, "config",
                ctx.principal)  # fmt: skip
    tenant_id = _target(ctx, args)
    _check_key(ctx, key, tenant_id)
    gone = ctx.session.execute(
        delete(ConfigRow)
        .where(ConfigRow.tenant_id == tenant_id, ConfigRow.key == key)
        .returning(ConfigRow.key)
    ).first()
    if gone is None:
        raise Conflict(f"{key!r} already has its default value", Status.ALREADY_DEFAULT)
    return ActionResult(affected=[(None, f"{key}@{tenant_id}")])


ACTIONS = (
    Action(name="config_get", qvd_object="config", type_of_action="see",
           acls=("config.qvd.",), handler=_get),
    Action(name="config_set", qvd_object="config", type_of_action="create_or_update",
           acls=("config.qvd.",), handler=_set),
    Action(name="config_delete", qvd_object="config", type_of_action="delete",
           acls=("config.qvd.",), handler=_delete),
)  # fmt: skip
