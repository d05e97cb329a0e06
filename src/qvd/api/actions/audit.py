"""The audit log: one row per object a mutating action touched (or tried to), and
one per login, with secrets masked. Written in its own transaction so that refused
and failed actions are recorded too."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.api.actions.principal import Principal
from qvd.db.models import LOG_OBJECTS, AuditLog

__all__ = ["AuditEntry", "mask", "write_audit"]

_SECRET_WORDS = ("password", "secret", "token", "sid", "key_pem", "private")
MASK = "**********"


def mask(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {
            k: MASK if any(w in str(k).lower() for w in _SECRET_WORDS) else mask(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


class AuditEntry:
    """What to record about one object."""

    __slots__ = ("object_id", "object_name", "status")

    def __init__(self, object_id: int | None, object_name: str | None, status: int) -> None:
        self.object_id = object_id
        self.object_name = object_name
        self.status = status


def write_audit(
    engine: Engine,
    *,
    principal: Principal | None,
    admin_name: str | None = None,
    action: str,
    type_of_action: str,
    qvd_object: str | None,
    arguments: dict[str, Any] | None,
    entries: Iterable[AuditEntry],
    source: str | None,
    address: str | None,
) -> None:
    obj = qvd_object if qvd_object in LOG_OBJECTS else None
    rows = [
        AuditLog(
            administrator_id=principal.admin_id if principal else None,
            administrator_name=principal.admin_name if principal else admin_name,
            tenant_id=principal.tenant_id if principal else None,
            tenant_name=principal.tenant_name if principal else None,
            action=action[:80],
            type_of_action=type_of_action,
            arguments=mask(arguments) if arguments else None,
            qvd_object=obj,
            object_id=e.object_id,
            object_name=(e.object_name or None) and str(e.object_name)[:1024],
            status=e.status,
            source=(source or None) and source[:80],
            ip=(address or None) and address[:45],
            superadmin=bool(principal and principal.superadmin),
        )
        for e in entries
    ]
    if not rows:
        return
    with Session(engine) as session, session.begin():
        session.add_all(rows)
