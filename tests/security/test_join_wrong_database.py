"""A join pointed at another database than the token's maker saw (a look-alike server,
a swapped fleet certificate): the fleet's L7R certificate is checked against the token's
fingerprint inside the joining transaction, so the node does not register and the token
stays unused."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, EmbeddedCluster
from qvd.node.joindb import JoinRefused, accept_token, make_token
from qvd.selfsigned import self_signed
from tests.node.joinnet import join_admin as join_admin


def _store_cert(engine: Engine) -> None:
    cert, key = self_signed(["fleet"], ["127.0.0.1"])
    with engine.begin() as conn:
        for k, v in (("l7r.ssl.cert", cert.decode()), ("l7r.ssl.key", key.decode())):
            conn.execute(
                text("INSERT INTO ssl_configs (key, value) VALUES (:k, :v) "
                     "ON CONFLICT (key) DO UPDATE SET value = :v"),
                {"k": k, "v": v},
            )  # fmt: skip


def test_a_swapped_fleet_certificate_stops_the_join(
    join_admin: DatabaseTarget, pg_cluster: EmbeddedCluster, engine: Engine
) -> None:
    _store_cert(engine)
    token = make_token(
        join_admin, app_role=pg_cluster.role, ttl=dt.timedelta(hours=1), host_name=None,
        db_host="127.0.0.1", db_port=str(pg_cluster.port),
    )  # fmt: skip
    assert token.l7r_cert_sha256 is not None
    _store_cert(engine)  # not the certificate the token's maker saw
    with pytest.raises(JoinRefused, match="right database"):
        accept_token(token, "node-a", "10.9.0.2", "the-node-s-own-password-0123456789")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hosts")).scalar_one() == 0
        used = conn.execute(text("SELECT used_at FROM node_join_tokens")).scalar_one()
    assert used is None  # still usable against the right database
