"""Retention of the session history (``session.history.retention.days``): the HKD's
collector pass (``qvd.hkd.gc.prune_session_history``, called by ``gc_loop``) deletes
the rows older than the retention in bounded batches, one transaction each, and goes
on at the next pass; 0 keeps everything."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, text

from qvd.config import Config
from qvd.hkd.gc import prune_session_history


def _rows(engine: Engine, old: int, new: int) -> None:
    with engine.begin() as conn:
        for age, count in (("400 days", old), ("1 day", new)):
            conn.execute(
                text(
                    "INSERT INTO session_history (kind, result, login, started_at) "
                    "SELECT 'login', 'ok', 'u' || n, now() - CAST(:age AS interval) "
                    "FROM generate_series(1, :c) n"
                ),
                {"age": age, "c": count},
            )


def _ages(engine: Engine) -> tuple[int, int]:
    with engine.begin() as conn:
        old, new = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE started_at < now() - interval '180 days'), "
                "count(*) FILTER (WHERE started_at >= now() - interval '180 days') "
                "FROM session_history"
            )
        ).one()
    return int(old), int(new)


def test_old_rows_go_in_bounded_batches_new_ones_stay(engine: Engine) -> None:
    _rows(engine, old=25, new=3)
    config = Config().with_overrides({"session.history.retention.days": "180"}, source="test")
    stop = threading.Event()
    assert prune_session_history(config, engine, stop, max_batches=2, batch=10) == 20
    assert _ages(engine) == (5, 3)  # the pass stopped at its bound
    assert prune_session_history(config, engine, stop, max_batches=2, batch=10) == 5
    assert _ages(engine) == (0, 3)
    assert prune_session_history(config, engine, stop, max_batches=2, batch=10) == 0


def test_retention_zero_keeps_everything(engine: Engine) -> None:
    _rows(engine, old=4, new=1)
    config = Config().with_overrides({"session.history.retention.days": "0"}, source="test")
    assert prune_session_history(config, engine, threading.Event()) == 0
    assert _ages(engine) == (4, 1)


def test_the_default_retention_is_180_days(engine: Engine) -> None:
    _rows(engine, old=2, new=2)
    assert prune_session_history(Config(), engine, threading.Event()) == 2
    assert _ages(engine) == (0, 2)
