"""Configuration tokens in the database (``configs``; tenant -1 is global).

- ``config_get`` lists every declared token with its default, the value the
  database sets (``operative_value``) and ``is_default``; superadmins see the global
  layer unless they filter on ``tenant_id``; tenant administrators see the tokens a
  tenant may override, with their tenant's values. Each row says when a change takes
  effect on the nodes (``applies``: live, next-start, restart, image, client; see
  ``qvd.config.applies``).
  A ``key_re`` filter (POSIX regular expression on the key) narrows the list, as the
  WAT's configuration screen asks; ``config_preffix_get`` lists the first parts of the
  token names (``l7r``, ``vm``, …) the caller may list.
- ``config_set`` checks the token exists (7382 otherwise) and its value's type;
  node-local tokens (``nodename``, ``database.*``, ``metrics.*``) cannot be set (7370);
  tenant administrators may set only per-tenant tokens, for their tenant (4230). A
  value's ``${…}`` references are confined (6320 otherwise): a tenant's row may name
  only per-tenant tokens that are not secret, a global row nothing node-local or
  secret, along the whole chain of references (``Config.check_db_row``). Turning
  ``wat.multitenant`` off with more than one tenant is refused (7373).
- ``config_delete`` resets a token to its default (7390 if it already is).
- ``config_wat_get_list`` (also as QVD's ``config_wat_get_details``) /
  ``config_wat_update`` (ACL ``config.wat.``): the WAT
  settings of a tenant, its ``language`` and ``block`` (page size). Everybody reads
  and changes their own tenant's; superadmins may name others (``tenant_id`` filter or
  argument; others get 4220 / 4230).
- ``config_ssl`` (superadmins with ``config.qvd.``): the L7R's TLS certificate, key,
  CA and CRL, stored in ``ssl_configs`` (see :mod:`qvd.api.services.ssl_material`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Boolean, String, and_, cast, column, delete, func, literal, select, values
from sqlalchemy.dialects.postgresql import insert

from qvd.api.actions.core import Action, ActionRequest, ActionResult, Args, Ctx, checked_name
from qvd.api.actions.listing import Field, ListQuery, ListSpec, run_list
from qvd.api.actions.principal import GLOBAL_TENANT_ID, SUPERTENANT_ID, Principal
from qvd.api.errors import Conflict, Forbidden, InvalidRequest, NotFound, Status
from qvd.api.services.common import block_arg, language_arg
from qvd.api.services.ssl_material import audit_arguments, check_material, check_types
from qvd.config import TOKENS, ConfigValueError
from qvd.config.applies import applies_of
from qvd.config.names import CONFIG_KEY, CONFIG_VALUE
from qvd.config.tokens import NODE_LOCAL_PREFIXES, find_family, is_node_local, lookup
from qvd.config.values import check_value, parse_bool
from qvd.db.models import Config as ConfigRow
from qvd.db.models import SslConfig, Tenant

__all__ = ["ACTIONS", "AUDIT_REDACTIONS", "WAT_SPEC"]

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
        hidden = and_(*(~key.startswith(prefix) for prefix in NODE_LOCAL_PREFIXES))
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


def _key_re(filters: Any) -> str | None:
    """The ``key_re`` filter (a POSIX regular expression on the key, as the WAT's
    configuration screen sends it), taken out of ``filters``."""
    if not isinstance(filters, dict) or "key_re" not in filters:
        return None
    pattern = filters.pop("key_re")
    if isinstance(pattern, dict) and len(pattern) == 1:
        pattern = next(iter(pattern.values()))
    if not isinstance(pattern, str) or len(pattern) > 256:
        raise InvalidRequest("key_re must be a regular expression (text)", 6310)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidRequest(f"key_re is not a valid regular expression: {exc}", 6310) from None
    return pattern


def _get(ctx: Ctx, req: ActionRequest) -> ActionResult:
    tenant_id = _tenant_of(ctx.principal, req.filters)
    filters = dict(req.filters) if isinstance(req.filters, dict) else req.filters
    if isinstance(filters, dict):
        filters.pop("tenant_id", None)
    pattern = _key_re(filters)
    spec = _spec(tenant_id, ctx.principal)
    query = ListQuery(
        filters=filters, fields=req.fields, order_by=req.order_by or [("key", False)],
        limit=req.limit, offset=req.offset,
        extra=[] if pattern is None else [spec.fields["key"].expr.op("~")(pattern)],
    )  # fmt: skip
    total, rows = run_list(ctx.session, spec, ctx.principal, query)
    for row in rows:  # when a change takes effect on the nodes (qvd.config.applies)
        if "key" in row:
            row["applies"] = applies_of(str(row["key"])).value
    return ActionResult(rows=rows, total=total)


def _prefixes(ctx: Ctx, req: ActionRequest) -> ActionResult:
    """``config_preffix_get``: the first parts of the token names the caller may list
    (``l7r``, ``vm``, …), as rows ``{"prefix": …}``, sorted."""
    tenant_id = _tenant_of(ctx.principal, None)
    query = ListQuery(fields=["key"], count=False)
    _total, rows = run_list(ctx.session, _spec(tenant_id, ctx.principal), ctx.principal, query)
    found = sorted({str(r["key"]).split(".", 1)[0] for r in rows if "." in str(r["key"])})
    return ActionResult(rows=[{"prefix": p} for p in found], total=len(found))


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
    if is_node_local(key):
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
    checked_name("config", "key", key, CONFIG_KEY, Status.BAD_CONFIG_TOKEN)
    value = args.text("value", max_len=4096, required=True) or ""
    checked_name("config", "value", value, CONFIG_VALUE, Status.BAD_ARGUMENT_VALUE)
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
    try:
        ctx.config.check_db_row(key, value, tenant_id)
    except ConfigValueError as exc:
        raise InvalidRequest(exc.reason, Status.BAD_ARGUMENT_VALUE) from None
    if key == "wat.multitenant" and not parse_bool(value):
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


# ---- WAT settings of a tenant ---------------------------------------------------------------
def _wat_scope(p: Principal) -> Any:
    return Tenant.id >= SUPERTENANT_ID if p.superadmin else Tenant.id == p.tenant_id


WAT_SPEC = ListSpec(
    object="wat config",
    fields={
        "tenant_id": Field(expr=Tenant.id, kind=int),
        "language": Field(expr=cast(Tenant.language, String)),
        "block": Field(expr=Tenant.block, kind=int),
    },
    base=lambda: select(literal(1)).select_from(Tenant),
    id_expr=Tenant.id,
    scope=_wat_scope,
)


def _mentions(filters: Any, name: str) -> bool:
    """True if a filter object uses ``name`` anywhere (nested ``-and`` etc. too)."""
    if isinstance(filters, list):
        return any(_mentions(f, name) for f in filters)
    if isinstance(filters, dict):
        return any(k == name or _mentions(v, name) for k, v in filters.items())
    return False


def _wat_get(ctx: Ctx, req: ActionRequest) -> ActionResult:
    p = ctx.principal
    named = _mentions(req.filters, "tenant_id")
    if named and not p.superadmin:
        raise Forbidden("only superadmins may filter WAT settings by tenant_id", 4220)
    query = ListQuery(
        filters=req.filters, fields=req.fields, order_by=req.order_by, limit=req.limit,
        offset=req.offset, count=req.count, extra=[] if named else [Tenant.id == p.tenant_id],
    )  # fmt: skip
    total, rows = run_list(ctx.session, WAT_SPEC, p, query)
    return ActionResult(rows=rows, total=total)


def _wat_update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    p = ctx.principal
    args = Args(req.arguments, "config_wat", p)
    tenant_id: int | None = args.take("tenant_id", int, superadmin=True)
    language = language_arg(args)
    block = block_arg(args, "config_wat")
    args.finish()
    if language is None and block is None:
        raise InvalidRequest(
            "config_wat: nothing to change (give 'language' and/or 'block')",
            Status.MISSING_ARGUMENT,
        )
    target = p.tenant_id if tenant_id is None else tenant_id
    tenant = ctx.session.get(Tenant, target) if target >= SUPERTENANT_ID else None
    if tenant is None:
        raise NotFound(f"config_wat: there is no tenant {target}", Status.MISSING_REFERENCE_ARG)
    if language is not None:
        tenant.language = language
    if block is not None:
        tenant.block = block
    return ActionResult(affected=[(tenant.id, tenant.name)])


# ---- the L7R's TLS material -----------------------------------------------------------------
def _ssl(ctx: Ctx, req: ActionRequest) -> ActionResult:
    if not ctx.principal.superadmin:
        raise Forbidden(
            "config_ssl: only superadmins may set the L7R certificate (it serves every tenant)",
            Status.FORBIDDEN_ACTION,
        )
    check_types(req.arguments if isinstance(req.arguments, dict) else {})
    args = Args(req.arguments, "config_ssl", ctx.principal)
    cert: str = args.take("cert", str, required=True)
    key: str = args.take("key", str, required=True)
    ca: str | None = args.take("ca", str, nullable=True)
    crl: str | None = args.take("crl", str, nullable=True)
    args.finish()
    material = check_material(cert, key, ca, crl)
    for name, value in material.rows().items():
        if value is None:
            ctx.session.execute(delete(SslConfig).where(SslConfig.key == name))
            continue
        stmt = insert(SslConfig).values(key=name, value=value)
        ctx.session.execute(
            stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value})
        )
    return ActionResult(affected=[(None, "l7r.ssl")])


# action name -> what the audit log keeps of its arguments
AUDIT_REDACTIONS: Mapping[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "config_ssl": audit_arguments,
}

ACTIONS = (
    Action(name="config_get", qvd_object="config", type_of_action="see",
           acls=("config.qvd.",), handler=_get),
    Action(name="config_set", qvd_object="config", type_of_action="create_or_update",
           acls=("config.qvd.",), handler=_set),
    Action(name="config_delete", qvd_object="config", type_of_action="delete",
           acls=("config.qvd.",), handler=_delete),
    Action(name="config_preffix_get", qvd_object="config", type_of_action="see",
           acls=("config.qvd.",), handler=_prefixes),
    Action(name="config_wat_get_list", qvd_object="config", type_of_action="see",
           acls=("config.wat.",), handler=_wat_get),
    Action(name="config_wat_get_details", qvd_object="config", type_of_action="see",
           acls=("config.wat.",), handler=_wat_get),
    Action(name="config_wat_update", qvd_object="config", type_of_action="update",
           acls=("config.wat.",), handler=_wat_update),
    Action(name="config_ssl", qvd_object="config", type_of_action="create_or_update",
           acls=("config.qvd.",), handler=_ssl),
)  # fmt: skip
