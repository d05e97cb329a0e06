"""Who is calling: the administrator behind a request, its tenant scope and its ACLs.

ACL rules (reference §5.4-5.6):
- effective ACLs come from the database (``qvd.db.acls``: roles, inheritance, deny);
- superadmins (tenant 0 ``*``) act on every tenant but -1; everybody else sees only
  their own tenant, never ``tenant.*`` or ``host.*`` ACLs (tenants and hosts are the
  supertenant's business);
- the recovery administrator (id 0) always holds the administrator, config, tenant
  and role ACLs, whatever its roles, so that a broken role setup can be repaired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qvd.api.errors import Forbidden, Status

__all__ = [
    "GLOBAL_TENANT_ID",
    "RECOVERY_ADMIN_ID",
    "SUPERTENANT_ID",
    "Principal",
    "effective_acls",
]

SUPERTENANT_ID = 0
GLOBAL_TENANT_ID = -1
RECOVERY_ADMIN_ID = 0
_RECOVERY_PREFIXES = ("administrator.", "config.", "tenant.", "role.")
_SUPERTENANT_ONLY = ("tenant.", "host.")


def effective_acls(
    db_acls: frozenset[str], all_acls: frozenset[str], *, admin_id: int, superadmin: bool
) -> frozenset[str]:
    """The ACLs an administrator may use, from what its roles grant."""
    acls = set(db_acls)
    if admin_id == RECOVERY_ADMIN_ID:
        acls |= {a for a in all_acls if a.startswith(_RECOVERY_PREFIXES)}
    if not superadmin:
        acls = {a for a in acls if not a.startswith(_SUPERTENANT_ONLY)}
    return frozenset(acls)


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """An authenticated administrator."""

    admin_id: int
    admin_name: str
    tenant_id: int
    tenant_name: str
    acls: frozenset[str]
    language: str = "auto"
    block: int = 10
    source: str | None = None
    address: str | None = None
    session_token: str | None = field(default=None, repr=False)

    @property
    def superadmin(self) -> bool:
        return self.tenant_id == SUPERTENANT_ID

    @property
    def recovery(self) -> bool:
        return self.admin_id == RECOVERY_ADMIN_ID

    def can(self, pattern: str) -> bool:
        """True if some ACL matches ``pattern`` (an exact name, or a regex in ``^…$``)."""
        if pattern.startswith("^"):
            rx = re.compile(pattern)
            return any(rx.match(a) for a in self.acls)
        return pattern in self.acls

    def can_any(self, *patterns: str) -> bool:
        return any(self.can(p) for p in patterns)

    def require(self, *patterns: str, what: str, code: int = Status.FORBIDDEN_ACTION) -> None:
        """Refuse unless one of ``patterns`` is held; the message names what is needed."""
        if not self.can_any(*patterns):
            need = " or ".join(repr(p) for p in patterns)
            raise Forbidden(f"{what} needs the ACL {need}, which this administrator lacks", code)

    def tenant_scope(self) -> int | None:
        """None for superadmins (every tenant), else the admin's own tenant."""
        return None if self.superadmin else self.tenant_id
