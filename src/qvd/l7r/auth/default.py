"""``default``: the password is checked against the user's argon2 hash."""

from __future__ import annotations

from sqlalchemy import text

from qvd.db.passwords import verify_password
from qvd.l7r.auth.base import Attempt, AuthContext, AuthPlugin

__all__ = ["DefaultPlugin"]


class DefaultPlugin(AuthPlugin):
    name = "default"

    def authenticate(self, ctx: AuthContext, attempt: Attempt) -> bool:
        stored = ctx.conn.execute(
            text("SELECT password FROM users WHERE tenant_id = :t AND login = :l"),
            {"t": attempt.tenant_id, "l": attempt.login},
        ).scalar()
        return verify_password(stored, attempt.password)
