#!/usr/bin/env python3
"""Benchmark of the session history recorder (issue #17) on a real PostgreSQL.

- enqueue: what a login or a connect pays on its own path (``HistoryRecorder.login``:
  a bounded queue put, no database);
- write: rows per second the recorder's one writer thread stores (each in its own
  transaction, names resolved by the INSERT);
- list: one ``session_get_list``-shaped page (the newest 100 of one tenant, with its
  total) over the rows written.

    .venv/bin/python bench/history.py [--quick] [--rows N]

The last line is ``enqueue_us=… write_rows_per_s=… list_page_ms=…``.
"""

from __future__ import annotations

import argparse
import logging
import time

from sqlalchemy import text

from benchkit import add_host, exit_on_sigterm, run_main, scratch_dir, throwaway_database
from qvd.l7r.history import HistoryRecorder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rows (< 60 s)")
    parser.add_argument("--rows", type=int, default=0)
    args = parser.parse_args()
    rows = args.rows or (2000 if args.quick else 20000)
    logging.basicConfig(level=logging.WARNING)
    exit_on_sigterm()
    with (
        scratch_dir("qvd-bench-history-") as tmp,
        throwaway_database(tmp, spread_vm_ids=False) as db,
    ):
        with db.engine.begin() as conn:
            host_id = add_host(conn, "b1", "10.9.9.2")
        recorder = HistoryRecorder(db.engine, host_id, capacity=rows + 10)
        t0 = time.perf_counter()
        for i in range(rows):  # queued before the writer starts: the pure enqueue cost
            recorder.login(
                login=f"user{i % 50}", tenant_id=1, address="192.0.2.1", result="ok",
                info="bench", transport="nx",
            )  # fmt: skip
        enqueue_us = (time.perf_counter() - t0) / rows * 1e6
        t0 = time.perf_counter()
        recorder.start()
        if not recorder.flush(600):
            raise SystemExit("the recorder did not write its queue in time")
        write_s = time.perf_counter() - t0
        recorder.stop()
        if recorder.dropped:
            raise SystemExit(f"{recorder.dropped} records were dropped")
        t0 = time.perf_counter()
        for _ in range(20):
            with db.engine.begin() as conn:
                conn.execute(
                    text(
                        "SELECT *, count(*) OVER () FROM session_history WHERE tenant_id = 1 "
                        "ORDER BY started_at DESC, id DESC LIMIT 100"
                    )
                ).all()
        list_ms = (time.perf_counter() - t0) / 20 * 1000
    print(
        f"enqueue_us={enqueue_us:.1f} write_rows_per_s={rows / write_s:.0f} "
        f"list_page_ms={list_ms:.1f}"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
