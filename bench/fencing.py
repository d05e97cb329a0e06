#!/usr/bin/env python3
"""Benchmark of self-fencing with a real LXC desktop and a real PostgreSQL.

- fence: the database is frozen (SIGSTOP: it accepts and never answers, as when the
  node is cut off) → the desktop's init has exited (pidfd), in seconds, against the
  fence timeout and the lost-node timeout after which a peer could take the desktop;
- outage: the database is stopped (down for everyone) for a while → the desktop must
  still run with the same PID, and the node must not have fenced.

Everything is made in temporary places and removed at the end.

    .venv/bin/python bench/fencing.py [--quick]

The last line is ``fence_s=… fence_timeout_s=… lost_timeout_s=… margin_s=…
outage_s=… outage_fenced=0|1 outage_desktop_kept=1|0`` (margin = lost - fence
measured: how long before a peer may act the desktop was dead; must be > 0).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text

from benchkit import bench_node, exit_on_sigterm
from qvd.db import EmbeddedCluster
from qvd.di import ensure_image


@contextlib.contextmanager
def frozen(cluster: EmbeddedCluster) -> Iterator[None]:
    """SIGSTOP the cluster's postmaster and its children (ours); SIGCONT at the end."""
    postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 5 s outage instead of 60 s")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    exit_on_sigterm()
    timing = {
        "internal.hkd.agent.ticker.delay": "0.5",
        "internal.hkd.agent.ticker.timeout": "3",
        "internal.hkd.fence.kill_time": "2",
        "internal.hkd.cluster.node.timeout": "6",
    }
    outage = 5.0 if args.quick else 60.0
    image = ensure_image("test")
    with bench_node("qvd-bench-fencing-") as node:
        host, (vm_id,) = node.seed(image, 1)
        db = node.db
        hkd = node.start_hkd(**timing)

        def start_desktop() -> int:
            with db.engine.begin() as conn:
                conn.execute(
                    text("UPDATE vm_runtimes SET host_id = :h, vm_cmd = 'start' WHERE vm_id = :v"),
                    {"h": host, "v": vm_id},
                )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with db.engine.begin() as conn:
                    state, pid = conn.execute(
                        text("SELECT vm_state, vm_pid FROM vm_runtimes WHERE vm_id = :v"),
                        {"v": vm_id},
                    ).one()
                if state == "running":
                    return int(pid)
                time.sleep(0.05)
            raise RuntimeError("the desktop never ran")

        # outage for everyone: nothing may die
        pid = start_desktop()
        db.engine.dispose()
        db.cluster.stop()
        try:
            time.sleep(outage)
        finally:
            db.cluster.start()
        kept = Path(f"/proc/{pid}").exists()
        fenced_in_outage = hkd.fencer.fence_count > 0
        deadline = time.monotonic() + 30
        while hkd.fenced and time.monotonic() < deadline:
            time.sleep(0.1)

        # cut off: the desktop must die within the fence timeout
        if not kept:
            pid = start_desktop()
        fd = os.pidfd_open(pid)
        try:
            with frozen(db.cluster):
                t0 = time.monotonic()
                ready, _, _ = select.select([fd], [], [], 60)
                fence = time.monotonic() - t0 if ready else float("inf")
        finally:
            os.close(fd)
        hkd.stop(timeout=30)
        node.hkd = None
        fence_timeout = float(timing["internal.hkd.agent.ticker.timeout"])
        lost = float(timing["internal.hkd.cluster.node.timeout"])
        node.figures = (
            f"fence_s={fence:.2f} fence_timeout_s={fence_timeout:g} lost_timeout_s={lost:g} "
            f"margin_s={lost - fence:.2f} outage_s={outage:g} "
            f"outage_fenced={int(fenced_in_outage)} outage_desktop_kept={int(kept)}"
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
