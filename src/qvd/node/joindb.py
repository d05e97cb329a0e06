"""Join tokens in the database: made by ``qvd node token`` (an administrator's
connection, one that may create roles), consumed by ``qvd node join`` (the token's own
role). See :mod:`qvd.node.jointoken` for why each token has a role.

The consuming side is one SECURITY DEFINER function, ``qvd_node_join_accept``, owned
by the token's maker: only a token's role may call it, only for its own token (the
role name is the hash's prefix), and in one statement it marks the token used (once:
``used_at IS NULL AND expiration > now()``), gives the role the verifier of its new
password and lifts its expiry. The caller registers its ``hosts`` row in the same
transaction: a refused token leaves no row, a failed registration leaves the token
unused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from qvd.config.names import HOST_NAME, NameRuleError, check_host_address
from qvd.db import DatabaseTarget
from qvd.node.jointoken import (
    ROLE_PREFIX,
    JoinToken,
    JoinTokenError,
    new_secret,
    role_of,
    scram_verifier,
)

__all__ = [
    "JoinRefused",
    "RegisteredHost",
    "accept_token",
    "fleet_certificate_sha256",
    "make_token",
    "register_host_row",
]

_ACCEPT_FUNCTION = r"""
CREATE OR REPLACE FUNCTION public.qvd_node_join_accept(p_sha text, p_host text, p_verifier text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  joiner text := session_user;
  row_found record;
BEGIN
  IF p_sha !~ '^[0-9a-f]{64}$' OR joiner <> 'qvd_node_' || left(p_sha, 16) THEN
    RAISE EXCEPTION 'this join token does not belong to the role that presents it'
      USING ERRCODE = '28000';
  END IF;
  IF p_verifier !~ '^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$' THEN
    RAISE EXCEPTION 'the new password must be given as a SCRAM-SHA-256 verifier'
      USING ERRCODE = '22023';
  END IF;
  UPDATE public.node_join_tokens SET used_at = now(), used_by_host = p_host
   WHERE token_sha256 = p_sha AND used_at IS NULL AND expiration > now()
     AND (host_name IS NULL OR host_name = p_host);
  IF NOT FOUND THEN
    SELECT used_at, expiration, host_name INTO row_found
      FROM public.node_join_tokens WHERE token_sha256 = p_sha;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'join token refused: unknown (revoked?)' USING ERRCODE = '28000';
    ELSIF row_found.used_at IS NOT NULL THEN
      RAISE EXCEPTION 'join token refused: already used (a token joins one node, once)'
        USING ERRCODE = '28000';
    ELSIF row_found.expiration <= now() THEN
      RAISE EXCEPTION 'join token refused: expired' USING ERRCODE = '28000';
    ELSE
      RAISE EXCEPTION 'join token refused: it is for host %', row_found.host_name
        USING ERRCODE = '28000';
    END IF;
  END IF;
  EXECUTE format('ALTER ROLE %I PASSWORD %L VALID UNTIL %L', joiner, p_verifier, 'infinity');
END
$fn$
"""


class JoinRefused(Exception):
    """The database refused the join (the message says why; no secret in it)."""


@dataclass(frozen=True, slots=True)
class RegisteredHost:
    host_id: int
    name: str
    address: str
    created: bool


def fleet_certificate_sha256(conn: psycopg.Connection[Any]) -> str | None:
    """SHA-256 (hex, of the DER) of the fleet's L7R certificate in ``ssl_configs``."""
    row = conn.execute("SELECT value FROM ssl_configs WHERE key = 'l7r.ssl.cert'").fetchone()
    if row is None or not row[0]:
        return None
    try:
        der = ssl.PEM_cert_to_DER_cert(str(row[0]).split("-----END CERTIFICATE-----")[0]
                                       + "-----END CERTIFICATE-----\n")  # fmt: skip
    except ValueError:
        return None
    return hashlib.sha256(der).hexdigest()


def _drop_stale(conn: psycopg.Connection[Any]) -> int:
    """Remove the roles and rows of tokens that expired unused (housekeeping)."""
    stale = conn.execute(
        "SELECT token_sha256 FROM node_join_tokens WHERE used_at IS NULL AND expiration < now()"
    ).fetchall()
    for (sha,) in stale:
        role = role_of(str(sha))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute("DELETE FROM node_join_tokens WHERE token_sha256 = %s", [sha])
    return len(stale)


def make_token(
    admin: DatabaseTarget,
    *,
    app_role: str,
    ttl: dt.timedelta,
    host_name: str | None,
    db_host: str,
    db_port: str,
) -> JoinToken:
    """A new token: its role (member of ``app_role``, login until the expiry), the
    accepting function, the row with the secret's hash. ``admin`` must be able to
    create roles (the embedded cluster's superuser, or a role with CREATEROLE)."""
    if host_name is not None:
        host_name = HOST_NAME.check(host_name)
    secret = new_secret()
    try:
        with admin.connect() as conn:
            expiration = conn.execute("SELECT now() + %s", [ttl]).fetchone()
            assert expiration is not None
            token = JoinToken(
                secret=secret, db_host=db_host, db_port=db_port, db_name=admin.dbname,
                expiration=expiration[0], host_name=host_name,
                l7r_cert_sha256=fleet_certificate_sha256(conn),
            )  # fmt: skip
            _drop_stale(conn)
            role = sql.Identifier(token.role)
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT "
                        "PASSWORD {} VALID UNTIL {} IN ROLE {}").format(
                    role, sql.Literal(scram_verifier(token.password)),
                    sql.Literal(token.expiration.isoformat()), sql.Identifier(app_role),
                )
            )  # fmt: skip
            conn.execute(_ACCEPT_FUNCTION)
            conn.execute("REVOKE ALL ON FUNCTION public.qvd_node_join_accept(text, text, text) "
                         "FROM PUBLIC")  # fmt: skip
            conn.execute(
                sql.SQL(
                    "GRANT EXECUTE ON FUNCTION public.qvd_node_join_accept(text, text, text) TO {}"
                ).format(role)
            )
            conn.execute(
                "INSERT INTO node_join_tokens (token_sha256, host_name, expiration) "
                "VALUES (%s, %s, %s)",
                [token.sha256, host_name, token.expiration],
            )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise JoinRefused(
            f"{admin.describe()} may not create roles ({exc.diag.message_primary}): run "
            "`qvd node token` where the database's administrator connects (the embedded "
            "cluster's machine, as root) or give the role CREATEROLE"
        ) from None
    except psycopg.Error as exc:
        raise JoinRefused(
            f"cannot make a join token in {admin.describe()}: {exc.diag.message_primary or exc}"
        ) from None
    return token


def register_host_row(
    conn: psycopg.Connection[Any], name: str, address: str, *, note: str
) -> RegisteredHost:
    """Insert this node's ``hosts`` row (or take over a stopped/lost one of the same
    name, at the new address); a running node of that name is refused."""
    name, address = HOST_NAME.check(name), check_host_address(address)
    row = conn.execute(
        "SELECT h.id, r.state FROM hosts h LEFT JOIN host_runtimes r ON r.host_id = h.id "
        "WHERE h.name = %s FOR UPDATE OF h",
        [name],
    ).fetchone()
    if row is not None:
        if row[1] in ("starting", "running"):
            raise JoinRefused(
                f"a node named {name!r} is registered and {row[1]}: choose another --name"
            )
        conn.execute("UPDATE hosts SET address = %s WHERE id = %s", [address, row[0]])
        return RegisteredHost(int(row[0]), name, address, created=False)
    new = conn.execute(
        "INSERT INTO hosts (name, address, description) VALUES (%s, %s, %s) RETURNING id",
        [name, address, note],
    ).fetchone()
    assert new is not None
    return RegisteredHost(int(new[0]), name, address, created=True)


def accept_token(token: JoinToken, name: str, address: str, new_password: str) -> RegisteredHost:
    """Consume ``token`` and register this node, in one transaction, as the token's
    role; afterwards that role logs in only with ``new_password``."""
    if not token.role.startswith(ROLE_PREFIX):
        raise JoinTokenError("malformed token role")
    try:
        target = DatabaseTarget({**token.connection_params(), "connect_timeout": "20"})
        with target.connect() as conn:
            conn.execute(
                "SELECT public.qvd_node_join_accept(%s, %s, %s)",
                [token.sha256, name, scram_verifier(new_password)],
            )
            expected = token.l7r_cert_sha256
            if expected is not None and fleet_certificate_sha256(conn) != expected:
                raise JoinRefused(
                    "the fleet's L7R certificate in this database is not the one the "
                    "token was made for: is this the right database? (token left unused)"
                )
            return register_host_row(conn, name, address, note="registered by qvd node join")
    except psycopg.OperationalError as exc:
        # a used token's password was replaced; an expired one's role may not log in
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        if "password authentication failed" in str(exc) or "expired" in str(exc):
            raise JoinRefused(
                "join token refused by the database: it was used already, it expired, or "
                "it was never issued (its role may not log in)"
            ) from None
        raise JoinRefused(f"cannot reach the database the token names: {message}") from None
    except psycopg.Error as exc:
        raise JoinRefused(str(exc.diag.message_primary or exc)) from None
    except NameRuleError as exc:
        raise JoinRefused(str(exc)) from None
