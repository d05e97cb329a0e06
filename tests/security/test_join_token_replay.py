"""A stolen join token: once used, once expired, or forged, it opens nothing.

A token carries database credentials (its own role's). The guards: joining replaces the
role's password (a used token's password no longer logs in); the role is VALID UNTIL
the token's expiry; the accepting function takes a token once, only from its own role;
the database keeps only the secret's SHA-256."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, EmbeddedCluster
from qvd.node.joindb import JoinRefused, accept_token, make_token
from qvd.node.jointoken import JoinToken, new_secret
from tests.node.joinnet import join_admin as join_admin


def _token(admin: DatabaseTarget, cluster: EmbeddedCluster, ttl: float = 3600) -> JoinToken:
    return make_token(
        admin, app_role=cluster.role, ttl=dt.timedelta(seconds=ttl), host_name=None,
        db_host="127.0.0.1", db_port=str(cluster.port),
    )  # fmt: skip


def _hosts(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(n) for n in conn.execute(text("SELECT name FROM hosts")).scalars()]


def test_a_used_token_no_longer_logs_in_nor_joins(
    join_admin: DatabaseTarget, pg_cluster: EmbeddedCluster, engine: Engine
) -> None:
    token = _token(join_admin, pg_cluster)
    with psycopg.connect(**token.connection_params()) as conn:  # before: it logs in
        conn.execute("SELECT 1")
    accept_token(token, "node-a", "10.9.0.2", "the-node-s-own-password-0123456789")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**token.connection_params())
    with pytest.raises(JoinRefused, match="used already"):
        accept_token(token, "node-thief", "10.9.0.3", "another-password-0123456789abcdef")
    assert _hosts(engine) == ["node-a"]
    with engine.connect() as conn:  # only the hash is kept
        stored = conn.execute(text("SELECT token_sha256 FROM node_join_tokens")).scalar_one()
    assert stored == token.sha256
    assert token.secret not in stored


def test_an_expired_token_does_not_log_in(
    join_admin: DatabaseTarget, pg_cluster: EmbeddedCluster, engine: Engine
) -> None:
    token = _token(join_admin, pg_cluster, ttl=3600)
    with join_admin.connect(autocommit=True) as conn:  # its expiry passes
        conn.execute(
            sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(
                sql.Identifier(token.role), sql.Literal("2000-01-01")
            )
        )
        conn.execute(
            "UPDATE node_join_tokens SET expiration = '2000-01-01' WHERE token_sha256 = %s",
            [token.sha256],
        )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**token.connection_params())
    with pytest.raises(JoinRefused):
        accept_token(token, "node-a", "10.9.0.2", "the-node-s-own-password-0123456789")
    assert _hosts(engine) == []


def test_an_expired_row_is_refused_even_if_the_role_could_log_in(
    join_admin: DatabaseTarget, pg_cluster: EmbeddedCluster, engine: Engine
) -> None:
    """Two guards: the row's expiry is checked in the database, not only the role's."""
    token = _token(join_admin, pg_cluster)
    with join_admin.connect(autocommit=True) as conn:
        conn.execute(
            "UPDATE node_join_tokens SET expiration = now() - interval '1 s' "
            "WHERE token_sha256 = %s",
            [token.sha256],
        )
    with pytest.raises(JoinRefused, match="expired"):
        accept_token(token, "node-a", "10.9.0.2", "the-node-s-own-password-0123456789")
    assert _hosts(engine) == []


def test_a_forged_token_cannot_register_a_host(
    join_admin: DatabaseTarget, pg_cluster: EmbeddedCluster, engine: Engine
) -> None:
    real = _token(join_admin, pg_cluster)
    forged = JoinToken(
        secret=new_secret(), db_host=real.db_host, db_port=real.db_port, db_name=real.db_name,
        expiration=real.expiration + dt.timedelta(days=300),
    )  # fmt: skip
    with pytest.raises(JoinRefused, match="refused"):
        accept_token(forged, "node-x", "10.9.0.9", "the-node-s-own-password-0123456789")
    assert _hosts(engine) == []


def test_a_token_role_cannot_take_another_token(
    join_admin: DatabaseTarget, pg_cluster: EmbeddedCluster, engine: Engine
) -> None:
    mine, other = _token(join_admin, pg_cluster), _token(join_admin, pg_cluster)
    refused = pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="belong")
    with psycopg.connect(**mine.connection_params()) as conn, refused:
        conn.execute(
            "SELECT public.qvd_node_join_accept(%s, 'node-x', %s)",
            [other.sha256, "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5"],
        )
    with engine.connect() as conn:
        used = conn.execute(text("SELECT count(*) FROM node_join_tokens WHERE used_at IS NOT NULL"))
        assert used.scalar_one() == 0
