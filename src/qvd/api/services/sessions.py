"""The session history, read only: who logged in, who used which desktop when, from
where, for how long, and how it ended (rows written by the L7R of every node).

``session_get_list`` filters, orders and pages like every ``*_get_list`` (reference
§5.2): by ``user_id`` / ``login``, ``vm_id`` / ``vm_name``, ``host_id`` /
``host_name``, ``kind`` (login, connect, takeover), ``result`` (ok or a failure code),
``end_reason`` and a time range on ``started_at`` (``{"started_at": {">=": …, "<": …}}``).
Besides the stored columns a row offers ``duration`` (whole seconds from start to end;
null while open) and ``open`` (not ended yet).

Tenant administrators see their own tenant's rows only: a login that named no known
tenant is the superadmins' to read. ACL ``session.see``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, func, literal, select

from qvd.api.actions.core import Action
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.actions.principal import Principal
from qvd.api.services.common import list_action
from qvd.db.models import SessionHistory as H
from qvd.db.models import Tenant

__all__ = ["ACTIONS", "SESSION_ACLS", "SPEC"]

SESSION_ACLS = ("session.see",)

_duration = func.floor(func.extract("epoch", H.ended_at - H.started_at)).cast(Integer)
_tenant_name = select(Tenant.name).where(Tenant.id == H.tenant_id).scalar_subquery()

_FIELDS: dict[str, Field] = {
    "id": Field(expr=H.id, kind=int),
    "kind": Field(expr=H.kind),
    "result": Field(expr=H.result),
    "detail": Field(expr=H.detail),
    "tenant_id": Field(expr=H.tenant_id, kind=int, superadmin_only=True),
    "tenant_name": Field(expr=_tenant_name, superadmin_only=True),
    "user_id": Field(expr=H.user_id, kind=int),
    "login": Field(expr=H.login),
    "vm_id": Field(expr=H.vm_id, kind=int),
    "vm_name": Field(expr=H.vm_name),
    "host_id": Field(expr=H.host_id, kind=int),
    "host_name": Field(expr=H.host_name),
    "client_address": Field(expr=H.client_address),
    "client_info": Field(expr=H.client_info),
    "transport": Field(expr=H.transport),
    "started_at": Field(expr=H.started_at, kind=dt.datetime),
    "ended_at": Field(expr=H.ended_at, kind=dt.datetime),
    "end_reason": Field(expr=H.end_reason),
    "duration": Field(expr=_duration, kind=int),
    "open": Field(expr=H.ended_at.is_(None) & H.kind.in_(("connect", "takeover")), kind=bool),
    "bytes_in": Field(expr=H.bytes_in, kind=int),
    "bytes_out": Field(expr=H.bytes_out, kind=int),
}  # fmt: skip


def _scope(p: Principal) -> Any:
    if p.superadmin:
        return None
    return H.tenant_id == p.tenant_id


SPEC = ListSpec(
    object="session",
    fields=_FIELDS,
    base=lambda: select(literal(1)).select_from(H),
    id_expr=H.id,
    scope=_scope,
)

ACTIONS = (
    Action(name="session_get_list", qvd_object="session", type_of_action="see",
           acls=SESSION_ACLS, handler=list_action(SPEC)),
)  # fmt: skip
