"""The audit log: one row per object a mutating action touched (or tried to), and
one per login, with secrets masked. Written in its own transaction so that refused
and failed actions are recorded too.

What is masked (``mask``): the value of any argument whose name looks secret
(``password``, ``bindpass``, ``secret``, ``token``, ``sid``, …, at any depth); the
``value`` next to a ``key`` that the token catalogue marks secret (``config_set`` of
``auth.ldap.bindpass``); and any text equal to a known secret of the node (the values
of the catalogue's secret tokens: ``Config.secret_values``), or containing one, which
is cut out."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.api.actions.principal import Principal
from qvd.config.tokens import is_secret
from qvd.db.models import LOG_OBJECTS, AuditLog

__all__ = ["AuditEntry", "mask", "write_audit"]

_SECRET_WORDS = (
    "pass", "pwd", "secret", "token", "sid", "key_pem", "private", "credential", "cookie",
)  # fmt: skip
MASK = "**********"
_CUT_MIN = 6  # shorter known secrets are masked only where a value equals them


def _secret_name(name: object) -> bool:
    lowered = str(name).lower()
    return any(w in lowered for w in _SECRET_WORDS)


def _masked_text(text: str, known: Collection[str]) -> str:
    if text in known:
        return MASK
    for secret in sorted(known, key=len, reverse=True):
        if len(secret) >= _CUT_MIN and secret in text:
            text = text.replace(secret, MASK)
    return text


def mask(value: Any, known_secrets: Collection[str] = ()) -> Any:
    """A copy of ``value`` with secret-looking arguments and known secrets masked."""
    if isinstance(value, dict):
        names_secret = isinstance(value.get("key"), str) and is_secret(value["key"])
        return {
            k: MASK
            if _secret_name(k) or (names_secret and k == "value")
            else mask(v, known_secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v, known_secrets) for v in value]
    if isinstance(value, str) and known_secrets:
        return _masked_text(value, known_secrets)
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
    known_secrets: Collection[str] = (),
) -> None:
    """Record ``entries``; ``known_secrets`` are values never to be stored as such."""
    obj = qvd_object if qvd_object in LOG_OBJECTS else None
    rows = [
        AuditLog(
            administrator_id=principal.admin_id if principal else None,
            administrator_name=principal.admin_name if principal else admin_name,
            tenant_id=principal.tenant_id if principal else None,
            tenant_name=principal.tenant_name if principal else None,
            action=action[:80],
            type_of_action=type_of_action,
            arguments=mask(arguments, known_secrets) if arguments else None,
            qvd_object=obj,
            object_id=e.object_id,
            object_name=(e.object_name or None)
            and _masked_text(str(e.object_name), known_secrets)[:1024],
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
