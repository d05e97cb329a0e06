#!/usr/bin/env python3
"""Benchmark of the database's config rows on a node (issue #17), on a real PostgreSQL.

- reload: a committed ``configs`` row (its ``qvd_config_changed`` NOTIFY) → the node's
  live configuration shows it, through the HKD's ``ConfigWatch`` (LISTEN; its poll and
  the live configuration's own max age set to an hour, so only the NOTIFY can do it);
- get: one ``LiveConfig.get()`` between changes (what every login and connect pays).

    .venv/bin/python bench/liveconfig.py [--quick] [--runs N]

The last line is ``reload_p50_ms=… reload_p95_ms=… get_us=…``.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from sqlalchemy import text

from benchkit import (
    add_host,
    exit_on_sigterm,
    percentile,
    run_main,
    scratch_dir,
    throwaway_database,
)
from qvd.config import Config
from qvd.db import LiveConfig
from qvd.hkd.liveconfig import ConfigWatch

KEY = "l7r.auth.plugin.totp.interval"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs (< 60 s)")
    parser.add_argument("--runs", type=int, default=0)
    args = parser.parse_args()
    runs = args.runs or (20 if args.quick else 200)
    logging.basicConfig(level=logging.WARNING)
    exit_on_sigterm()
    with (
        scratch_dir("qvd-bench-liveconfig-") as tmp,
        throwaway_database(tmp, spread_vm_ids=False) as db,
    ):
        with db.engine.begin() as conn:
            host_id = add_host(conn, "b1", "10.9.9.2")
        config = Config().with_overrides({"nodename": "b1"}, source="bench")
        live = LiveConfig(config, db.engine, max_age=3600)
        watch = ConfigWatch(
            live, config, target=db.target, engine=db.engine, host_id=host_id,
            poll_delay=3600, transient=(Exception,),
        )  # fmt: skip
        stop = threading.Event()
        thread = threading.Thread(target=watch.run, args=(stop,), daemon=True)
        thread.start()
        try:
            while watch.checks < 1:
                time.sleep(0.01)
            reloads: list[float] = []
            for i in range(runs):
                value = str(31 + i)  # a new value each time
                t0 = time.monotonic()  # from the commit's start
                with db.engine.begin() as conn:
                    conn.execute(
                        text(
                            "INSERT INTO configs (tenant_id, key, value) VALUES (-1, :k, :v) "
                            "ON CONFLICT (tenant_id, key) DO UPDATE SET value = :v"
                        ),
                        {"k": KEY, "v": value},
                    )
                deadline = t0 + 10
                while live.get().get(KEY) != value:
                    if time.monotonic() > deadline:
                        raise SystemExit("a row never reached the live configuration")
                    time.sleep(0.0005)
                reloads.append((time.monotonic() - t0) * 1000)
            n = 20_000
            t0 = time.perf_counter()
            for _ in range(n):
                live.get()
            get_us = (time.perf_counter() - t0) / n * 1e6
        finally:
            stop.set()
            thread.join(10)
    p50, p95 = percentile(reloads, 0.5), percentile(reloads, 0.95)
    print(f"reload_p50_ms={p50:.1f} reload_p95_ms={p95:.1f} get_us={get_us:.1f}")
    return 0


if __name__ == "__main__":
    run_main(main)
