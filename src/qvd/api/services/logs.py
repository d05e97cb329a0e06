"""The audit log, read only: tenant administrators see their tenant's entries and
never a superadmin's."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import literal, select

from qvd.api.actions.core import Action
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.actions.principal import Principal
from qvd.api.services.common import list_action
from qvd.db.models import AuditLog

__all__ = ["ACTIONS", "SPEC"]

_FIELDS: dict[str, Field] = {
    "id": Field(expr=AuditLog.id, kind=int),
    "administrator_id": Field(
        expr=AuditLog.administrator_id, kind=int, see="log.see.administrator"
    ),
    "administrator_name": Field(expr=AuditLog.administrator_name, see="log.see.administrator"),
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
    "status": Field(expr=AuditLog.status, kind=int),
    "source": Field(expr=AuditLog.source, see="log.see.source"),
    "ip": Field(expr=AuditLog.ip, see="log.see.address"),
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

ACTIONS = (
    Action(name="log_get_list", qvd_object="log", type_of_action="see",
           acls=("log.see-main.",), handler=list_action(SPEC)),
)  # fmt: skip
