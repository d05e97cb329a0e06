"""Effective ACLs: what a role or an administrator may do, after inheritance and deny.

The rule lives in SQL (``qvd_role_acl_ids``, revision 0002) so that the API can also
filter with it; these functions are the Python face of it.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["administrator_acls", "role_acls"]


def role_acls(session: Session, role_id: int) -> frozenset[str]:
    """ACL names a role grants: its own and inherited ones, minus its own denies."""
    rows = session.execute(
        text("SELECT a.name FROM qvd_role_acl_ids(:role) x(acl_id) JOIN acls a ON a.id = x.acl_id"),
        {"role": role_id},
    )
    return frozenset(r[0] for r in rows)


def administrator_acls(session: Session, administrator_id: int) -> frozenset[str]:
    """ACL names an administrator holds through all of its roles."""
    rows = session.execute(
        text("SELECT acl_name FROM administrator_effective_acls WHERE administrator_id = :a"),
        {"a": administrator_id},
    )
    return frozenset(r[0] for r in rows)
