"""The database side of the session history that several components share: closing
the open connects of nodes that died (the HKD's dead-peer handling, and an L7R for its
own node when it starts) and the retention (``session.history.retention.days``,
enforced by the HKD's collector in bounded batches)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

__all__ = ["PRUNE_BATCH", "close_open_rows", "prune_history"]

PRUNE_BATCH = 5000  # rows one retention statement deletes

_CLOSE_HOSTS = text(
    """
    UPDATE session_history h SET end_reason = :reason,
           ended_at = GREATEST(h.started_at, COALESCE(
               (SELECT r.ok_ts FROM host_runtimes r WHERE r.host_id = h.host_id), now()))
     WHERE host_id = ANY(:hosts) AND ended_at IS NULL AND kind IN ('connect', 'takeover')
    """
)
_PRUNE = text(
    """
    DELETE FROM session_history WHERE id IN (
        SELECT id FROM session_history
         WHERE started_at < now() - make_interval(days => :days)
         LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)


def close_open_rows(conn: Connection, host_ids: Iterable[int], reason: str = "node_lost") -> int:
    """End the open connects recorded by ``host_ids`` (nodes that died); how many."""
    hosts = list(host_ids)
    if not hosts:
        return 0
    return conn.execute(_CLOSE_HOSTS, {"hosts": hosts, "reason": reason}).rowcount


def prune_history(conn: Connection, days: int, batch: int = PRUNE_BATCH) -> int:
    """Delete at most ``batch`` rows that started more than ``days`` days ago (0 or
    less: keep everything); how many went. Rows another node is deleting are skipped."""
    if days <= 0:
        return 0
    return conn.execute(_PRUNE, {"days": days, "batch": batch}).rowcount
