"""Connection limits reach libpq and the server: keepalives, TCP user timeout, connect
timeout and statement timeout on every connection of an engine made with them."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from qvd.db import ConnectionLimits, DatabaseTarget, limited_target, make_engine

LIMITS = ConnectionLimits(connect_timeout=3, user_timeout=2.5, statement_timeout=0.5)


def test_the_limits_are_libpq_parameters_and_server_options(db: DatabaseTarget) -> None:
    target = limited_target(
        DatabaseTarget({**db.params, "options": "-c search_path=public"}), LIMITS
    )
    params = target.params
    assert params["keepalives"] == "1"
    assert params["tcp_user_timeout"] == "2500"
    assert params["connect_timeout"] == "3"
    assert int(params["keepalives_idle"]) + int(params["keepalives_count"]) <= 3
    assert params["options"] == "-c search_path=public -c statement_timeout=500"
    with target.connect() as conn:
        info = conn.info.get_parameters()
        assert (info["keepalives"], info["tcp_user_timeout"]) == ("1", "2500")


def test_a_statement_past_its_timeout_is_cancelled_by_the_server(db: DatabaseTarget) -> None:
    engine = make_engine(db, limits=LIMITS)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "500ms"
            assert conn.execute(text("SHOW search_path")).scalar_one()  # the rest untouched
        with pytest.raises(OperationalError, match="statement timeout"), engine.begin() as conn:
            conn.execute(text("SELECT pg_sleep(5)"))
    finally:
        engine.dispose()
