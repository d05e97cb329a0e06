"""The audit log, read only: tenant administrators see their tenant's entries and
never a superadmin's.

Besides the stored columns a row offers ``admin_id`` / ``admin_name`` (the same as
``administrator_id`` / ``administrator_name``), ``antiquity`` (whole seconds since the
entry was written), ``object_deleted`` (the object the entry names no longer exists)
and ``admin_deleted`` (the administrator no longer exists).

``sources_in_log`` lists the distinct ``source`` values of the entries the caller may
see; ``action_get_list`` and ``object_get_list`` list the values ``type_of_action`` and
``qvd_object`` can take. All three answer rows ``{"id": v, "name": v}`` sorted by value
(the WAT fills its log filter drop-downs with them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, case, exists, false, func, literal, select

from qvd.api.actions.core import Action, ActionRequest, ActionResult, Ctx
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.actions.principal import Principal
from qvd.api.services.common import list_action
from qvd.db.models import (
    LOG_ACTION_TYPES,
    LOG_OBJECTS,
    Administrator,
    AuditLog,
    Di,
    Host,
    Osf,
    Role,
    Tenant,
    User,
    Vm,
)

__all__ = ["ACTIONS", "LOG_ACLS", "SPEC"]

LOG_ACLS = (
    r"^(log\.see-(main|details)\.|(administrator|di|host|osf|role|tenant|user|vm)\.see\.log)$",
)
"""Who may read the log: its own ACLs, or any object's ``see.log`` (its details page)."""

_OBJECT_TABLES: dict[str, Any] = {
    "user": User, "vm": Vm, "host": Host, "osf": Osf, "di": Di, "role": Role,
    "administrator": Administrator, "tenant": Tenant,
}  # fmt: skip


def _gone(table: Any) -> Any:
    return ~exists().where(table.id == AuditLog.object_id).correlate(AuditLog)


_object_deleted = case(
    (AuditLog.object_id.is_(None), false()),
    *((AuditLog.qvd_object == name, _gone(t)) for name, t in _OBJECT_TABLES.items()),
    else_=false(),
)
_admin_deleted = case(
    (AuditLog.administrator_id.is_(None), false()),
    else_=~exists().where(Administrator.id == AuditLog.administrator_id).correlate(AuditLog),
)
_antiquity = func.floor(func.extract("epoch", func.now() - AuditLog.time)).cast(Integer)

_FIELDS: dict[str, Field] = {
    "id": Field(expr=AuditLog.id, kind=int),
    "administrator_id": Field(
        expr=AuditLog.administrator_id, kind=int, see="log.see.administrator"
    ),
    "administrator_name": Field(expr=AuditLog.administrator_name, see="log.see.administrator"),
    "admin_id": Field(expr=AuditLog.administrator_id, kind=int, see="log.see.administrator"),
    "admin_name": Field(expr=AuditLog.administrator_name, see="log.see.administrator"),
    "tenant_id": Field(expr=AuditLog.tenant_id, kind=int, superadmin_only=True),
    "tenant_name": Field(expr=AuditLog.tenant_name, superadmin_only=True),
    "action": Field(expr=AuditLog.action),
    "type_of_action": Field(expr=AuditLog.type_of_action),
    "arguments": Field(expr=AuditLog.arguments, kind=dict, see="log.see.call-arguments",
                       filterable=False),
    "qvd_object": Field(expr=AuditLog.qvd_object),
    "object_id": Field(expr=AuditLog.object_id, kind=int),
    "object_name": Field(expr=AuditLog.object_name),
    "time": Field(expr=AuditLog.time, kind=dt.datetime),
    "antiquity": Field(expr=_antiquity, kind=int),
    "status": Field(expr=AuditLog.status, kind=int),
    "source": Field(expr=AuditLog.source, see="log.see.source"),
    "ip": Field(expr=AuditLog.ip, see="log.see.address"),
    "object_deleted": Field(expr=_object_deleted, kind=bool),
    "admin_deleted": Field(expr=_admin_deleted, kind=bool, see="log.see.administrator"),
    "superadmin": Field(expr=AuditLog.superadmin, kind=bool, superadmin_only=True),
}  # fmt: skip


def _scope(p: Principal) -> Any:
    if p.superadmin:
        return None
    return (AuditLog.tenant_id == p.tenant_id) & AuditLog.superadmin.is_(False)


SPEC = ListSpec(
    object="log",
    fields=_FIELDS,
    base=lambda: select(literal(1)).select_from(AuditLog),
    id_expr=AuditLog.id,
    scope=_scope,
)


def _named(values: list[str]) -> ActionResult:
    rows = [{"id": v, "name": v} for v in sorted(values)]
    return ActionResult(rows=rows, total=len(rows))


def _sources(ctx: Ctx, req: ActionRequest) -> ActionResult:
    stmt = select(AuditLog.source).where(AuditLog.source.is_not(None)).distinct()
    scope = _scope(ctx.principal)
    if scope is not None:
        stmt = stmt.where(scope)
    return _named([str(s) for s in ctx.session.scalars(stmt)])


def _actions(ctx: Ctx, req: ActionRequest) -> ActionResult:
    return _named(list(LOG_ACTION_TYPES))


def _objects(ctx: Ctx, req: ActionRequest) -> ActionResult:
    return _named(list(LOG_OBJECTS))


ACTIONS = (
    Action(name="log_get_list", qvd_object="log", type_of_action="see",
           acls=LOG_ACLS, handler=list_action(SPEC)),
    Action(name="log_get_details", qvd_object="log", type_of_action="see",
           acls=("log.see-details.",), handler=list_action(SPEC)),
    Action(name="sources_in_log", qvd_object=None, type_of_action="see",
           acls=LOG_ACLS, handler=_sources),
    Action(name="action_get_list", qvd_object=None, type_of_action="see",
           acls=LOG_ACLS, handler=_actions),
    Action(name="object_get_list", qvd_object=None, type_of_action="see",
           acls=LOG_ACLS, handler=_objects),
)  # fmt: skip
