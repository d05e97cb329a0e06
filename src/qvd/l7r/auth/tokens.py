"""Bearer tokens (``user_tokens``; the table holds SHA-256 digests only).

A single-use token is consumed by the login that uses it (one ``DELETE … RETURNING``,
so two concurrent uses cannot both win); a multi-use token stays until it expires
(QVD expired multi-use tokens after one use: reference §9.4). An expired token is
deleted and refused.
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

__all__ = ["TOKEN_LIFETIME", "bearer_login", "issue_token", "store_auth_params", "token_digest"]

TOKEN_LIFETIME = dt.timedelta(hours=24)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_login(conn: Connection, candidates: Sequence[str]) -> Principal:
    """The user a bearer token stands for; consumes single-use tokens."""
    digests = [token_digest(c) for c in candidates]
    row = conn.execute(
        text(
            "SELECT t.token_sha256, t.user_id, t.vm_id, t.expiration, t.multi_use, "
            "       t.auth_params_id, u.tenant_id, u.login, u.blocked, tn.blocked "
            "  FROM user_tokens t JOIN users u ON u.id = t.user_id "
            "  JOIN tenants tn ON tn.id = u.tenant_id "
            " WHERE t.token_sha256 = ANY(:d) FOR UPDATE OF t"
        ),
        {"d": digests},
    ).first()
    if row is None:
        raise Unauthorized("unknown or already used token")
    digest, user_id, vm_id, expiration, multi_use, params_id, tenant_id, login = row[:8]
    user_blocked, tenant_blocked = row[8], row[9]
    if expiration <= dt.datetime.now(dt.UTC):
        conn.execute(text("DELETE FROM user_tokens WHERE token_sha256 = :d"), {"d": digest})
        conn.commit()
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
        token_vm_id=None if vm_id is None else int(vm_id),
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
) -> str:
    """A new token (returned once, in clear; the table keeps its digest)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        text(
            "INSERT INTO user_tokens (token_sha256, user_id, vm_id, expiration, auth_params_id, "
            "multi_use) VALUES (:d, :u, :v, :e, :a, :m)"
        ),
        {
            "d": token_digest(token),
            "u": user_id,
            "v": vm_id,
            "e": dt.datetime.now(dt.UTC) + lifetime,
            "a": auth_params_id,
            "m": multi_use,
        },
    )
    return token
