"""Bearer tokens (``user_tokens``; the table holds SHA-256 digests only).

A single-use token is consumed by the login that uses it (one ``DELETE … RETURNING``,
so two concurrent uses cannot both win); a multi-use token stays until it expires
(QVD expired multi-use tokens after one use: reference §9.4). An expired token is
deleted and refused.

A token dies with its user's password: each row keeps the fingerprint (SHA-256) of the
user's stored hash when it was issued, and a login with it is refused (and the row
deleted) once the stored hash differs (a password change; also the one-time renewal of
an outdated hash). A token minted from a bearer login is no wider than the one used:
same VM, not longer-lived, single-use if it was (``Principal.token_*``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, text

from qvd.l7r.auth.base import Principal
from qvd.l7r.errors import Unauthorized

__all__ = [
    "TOKEN_LIFETIME",
    "bearer_login",
    "issue_token",
    "password_fp_sql",
    "store_auth_params",
    "token_digest",
]

TOKEN_LIFETIME = dt.timedelta(hours=24)


def password_fp_sql(column: str) -> str:
    """SQL for the fingerprint of a stored password hash (``column``, a fixed name)."""
    return f"encode(sha256(convert_to(coalesce({column}, ''), 'UTF8')), 'hex')"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_login(conn: Connection, candidates: Sequence[str]) -> Principal:
    """The user a bearer token stands for; consumes single-use tokens."""
    digests = [token_digest(c) for c in candidates]
    row = conn.execute(
        text(
            "SELECT t.token_sha256, t.user_id, t.vm_id, t.expiration, t.multi_use, "
            "       t.auth_params_id, u.tenant_id, u.login, u.blocked, tn.blocked, "
            f"      t.password_fp = {password_fp_sql('u.password')}, "
            f"      {password_fp_sql('u.password')} "
            "  FROM user_tokens t JOIN users u ON u.id = t.user_id "
            "  JOIN tenants tn ON tn.id = u.tenant_id "
            " WHERE t.token_sha256 = ANY(:d) FOR UPDATE OF t"
        ),
        {"d": digests},
    ).first()
    if row is None:
        raise Unauthorized("unknown or already used token")
    digest, user_id, vm_id, expiration, multi_use, params_id, tenant_id, login = row[:8]
    user_blocked, tenant_blocked, same_password, password_fp = row[8:12]
    if expiration <= dt.datetime.now(dt.UTC) or not same_password:
        conn.execute(text("DELETE FROM user_tokens WHERE token_sha256 = :d"), {"d": digest})
        conn.commit()
        if not same_password:
            raise Unauthorized("the token ended when the user's password changed")
        raise Unauthorized("the token has expired")
    if not multi_use:
        gone = conn.execute(
            text("DELETE FROM user_tokens WHERE token_sha256 = :d RETURNING 1"), {"d": digest}
        ).first()
        if gone is None:
            raise Unauthorized("unknown or already used token")
    if user_blocked or tenant_blocked:
        raise Unauthorized("the user or its tenant is blocked")
    params = {"qvd.vm.user.name": str(login)}
    if params_id is not None:
        stored = conn.execute(
            text("SELECT parameters FROM user_auth_parameters WHERE id = :i"), {"i": params_id}
        ).scalar()
        if isinstance(stored, dict):
            params.update({str(k): str(v) for k, v in stored.items()})
    return Principal(
        user_id=int(user_id),
        tenant_id=int(tenant_id),
        login=str(login),
        params=params,
        password_fp=str(password_fp),
        token_vm_id=None if vm_id is None else int(vm_id),
        token_expires=expiration,
        token_multi_use=bool(multi_use),
    )


def store_auth_params(conn: Connection, params: Mapping[str, str]) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO user_auth_parameters (parameters) VALUES (CAST(:p AS jsonb)) "
                "RETURNING id"
            ),
            {"p": json.dumps(dict(params))},
        ).scalar_one()
    )


def issue_token(
    conn: Connection,
    user_id: int,
    *,
    multi_use: bool,
    vm_id: int | None = None,
    auth_params_id: int | None = None,
    lifetime: dt.timedelta = TOKEN_LIFETIME,
    expires_by: dt.datetime | None = None,
) -> str:
    """A new token (returned once, in clear; the table keeps its digest), valid for
    ``lifetime`` but not past ``expires_by``, bound to the user's current password."""
    token = secrets.token_urlsafe(32)
    expiration = dt.datetime.now(dt.UTC) + lifetime
    if expires_by is not None:
        expiration = min(expiration, expires_by)
    inserted = conn.execute(
        text(
            "INSERT INTO user_tokens (token_sha256, user_id, vm_id, expiration, auth_params_id, "
            "multi_use, password_fp) "
            f"SELECT :d, u.id, :v, :e, :a, :m, {password_fp_sql('u.password')} "
            "FROM users u WHERE u.id = :u RETURNING 1"
        ),
        {"d": token_digest(token), "u": user_id, "v": vm_id, "e": expiration,
         "a": auth_params_id, "m": multi_use},
    ).first()  # fmt: skip
    if inserted is None:
        raise Unauthorized("the user of this login no longer exists")
    return token
