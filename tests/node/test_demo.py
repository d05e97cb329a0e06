"""``register_host``: the node's own row, its name and address checked by the host
rules before they reach the database (real PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from qvd.config.names import NameRuleError
from qvd.node.demo import register_host


def test_register_host_is_idempotent_and_follows_the_host_rules(engine: Engine) -> None:
    host_id, created = register_host(engine, "qvd-node-01", "10.9.0.1")
    assert created
    assert register_host(engine, "qvd-node-01", "10.9.0.2") == (host_id, False)
    with engine.connect() as conn:
        address = conn.execute(
            text("SELECT address FROM hosts WHERE id = :i"), {"i": host_id}
        ).scalar_one()
    assert address == "10.9.0.2"
    for name, addr in (("bad name", "10.9.0.3"), ("n\nx", "10.9.0.3"), ("-n", "10.9.0.3"),
                       ("node2", "node2.example"), ("node2", "10.9.0.3\nx")):  # fmt: skip
        with pytest.raises(NameRuleError):
            register_host(engine, name, addr)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hosts")).scalar_one() == 1
