"""WAT list engine benchmark, 10,000 VMs: the VM list page with a free-text search, a
column filter and a sort (p50/p95 of the whole server-rendered page), and the CSV
export of every VM (streamed, paged through the action in chunks).

It makes its own throwaway PostgreSQL cluster (fsync off) with ``bench/api.py``'s
10,000 VMs, runs the API (and the WAT) over TLS in a separate process as ``qvd up``
does, logs in through the WAT's form and talks to it over loopback, then removes
everything. Run as root:

    .venv/bin/python bench/wat_lists.py [--quick]

The last line printed is ``wat_list_filtered_p50_ms=… wat_list_filtered_p95_ms=…
csv10k_ms=… csv_rows_per_s=…``. Target: a list page < 300 ms (issue 14).
"""

from __future__ import annotations

import argparse
import csv
import io
import multiprocessing
import statistics
import sys
import time

import httpx

from api import PASSWORD, VMS, _serve, populate
from benchkit import (
    cleanup_begins,
    exit_on_sigterm,
    free_port,
    percentile,
    scratch_dir,
    throwaway_database,
    wait_listening,
)

LIST = "/vms?q=vm-1&f.state=running&sort=-name"


def bench_list(client: httpx.Client, rounds: int) -> tuple[float, float]:
    times: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        reply = client.get(LIST)
        times.append((time.perf_counter() - t0) * 1000)
        assert reply.status_code == 200, reply.text[:500]
        assert 'id="list"' in reply.text
    return statistics.median(times), percentile(times, 0.95)


def bench_csv(client: httpx.Client, rounds: int) -> tuple[float, int]:
    times: list[float] = []
    rows = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        reply = client.get("/vms.csv")
        times.append((time.perf_counter() - t0) * 1000)
        assert reply.status_code == 200, reply.text[:500]
        rows = len(list(csv.reader(io.StringIO(reply.text)))) - 1
    return statistics.median(times), rows


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    args = parser.parse_args()
    list_rounds, csv_rounds = (20, 2) if args.quick else (100, 5)
    with (
        scratch_dir("qvd-bench-wat-lists-") as base,
        throwaway_database(base, spread_vm_ids=False) as db,
    ):
        cluster = db.cluster
        t0 = time.monotonic()
        populate(db.engine)
        db.engine.dispose()
        print(f"populated {VMS} VMs in {time.monotonic() - t0:.1f} s", flush=True)
        port = free_port()
        overrides = {
            "api.port": str(port), "path.api.ssl.cert": str(base / "cert.pem"),
            "path.api.ssl.key": str(base / "key.pem"), "path.storage.root": str(base / "st"),
        }  # fmt: skip
        url = (f"postgresql:///{cluster.dbname}?host={cluster.socket_dir}&port={cluster.port}"
               f"&user={cluster.role}")  # fmt: skip
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(overrides, url))
        try:
            server.start()
            wait_listening(port, 30)
            base_url = f"https://127.0.0.1:{port}"
            with httpx.Client(base_url=base_url, verify=str(base / "cert.pem"), timeout=60) as c:
                form = {"login": "bench", "password": PASSWORD, "tenant": "*", "next": "/"}
                assert c.post("/login", data=form).status_code == 303
                c.get(LIST)  # warm up
                p50, p95 = bench_list(c, list_rounds)
                print(f"VM list page ({LIST}): p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
                csv_ms, rows = bench_csv(c, csv_rounds)
                assert rows == VMS, rows
                rate = rows / (csv_ms / 1000)
                print(f"CSV export of {rows} VMs: {csv_ms:.0f} ms ({rate:.0f} rows/s)", flush=True)
            print(
                f"wat_list_filtered_p50_ms={p50:.1f} wat_list_filtered_p95_ms={p95:.1f} "
                f"csv10k_ms={csv_ms:.0f} csv_rows_per_s={rate:.0f}"
            )
        finally:
            cleanup_begins()
            if server.pid is not None:
                server.terminate()
                server.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
