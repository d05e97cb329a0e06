"""Admin API benchmark: a 10,000-VM list with filters (p50/p95), simple reads per
second, and the delay from a VM start request to its ``vm_cmd`` NOTIFY.

It makes its own throwaway PostgreSQL cluster (fsync off) in a temporary directory,
fills it with 10,000 VMs, runs the API over TLS in a separate process (as ``qvd up``
does) and talks to it over loopback, then removes everything. Run as root:

    .venv/bin/python bench/api.py [--quick]

The last line printed is ``list10k_p50_ms=… reads_per_s=… start_to_cmd_ms=…``.
Targets: the filtered page < 200 ms; >= 500 simple reads/s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from typing import Any

import httpx
from sqlalchemy import Engine

from benchkit import (
    api_server,
    exit_on_sigterm,
    scratch_dir,
    seed_vms,
    throwaway_database,
)
from qvd.db import Listener
from qvd.db.channels import vm_cmd_channel

VMS = 10_000
USERS = 1_000
PASSWORD = "bench-password"  # noqa: S105 - a throwaway cluster's admin


def populate(engine: Engine) -> int:
    """10,000 VMs of 1,000 users in tenant 1; two running hosts; an admin. Returns
    the first host id."""
    return seed_vms(engine, PASSWORD, VMS, USERS)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_list(client: httpx.Client, sid: str, rounds: int) -> tuple[float, float, int]:
    body = {
        "action": "vm_get_list", "sid": sid, "block": 100, "offset": 3,
        "filters": {"state": "running", "name": {"~": "vm-1%"}, "blocked": 0},
        "order_by": {"field": ["name"], "order": "-asc"},
    }  # fmt: skip
    times: list[float] = []
    total = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        reply = client.post("/api", json=body).json()
        times.append((time.perf_counter() - t0) * 1000)
        assert reply["status"] == 0, reply
        total = reply["total"]
    return statistics.median(times), percentile(times, 0.95), total


def _reader(
    port: int, ca: str, sid: str, start: Any, seconds: float, offset: int, out: Any
) -> None:
    """One client process: keep-alive TLS connection, GET one VM after another for
    ``seconds`` once every client is connected (the ``start`` barrier)."""
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
    headers = {"X-QVD-Sid": sid}
    conn.connect()
    start.wait()
    stop = time.monotonic() + seconds
    n = 0
    while time.monotonic() < stop:
        vm = 10_000 + (n * 7919 + offset) % VMS
        conn.request("GET", f"/api/v1/vms/{vm}?fields=id,name,state", headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            out.put(f"error {response.status}: {body[:200]!r}")
            return
        n += 1
    out.put(n)


def bench_reads(port: int, ca: str, sid: str, seconds: float, workers: int) -> float:
    """Reads per second of ``workers`` client processes, counted from a common start
    once they are spawned and connected (their start-up is not in the figure)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = ctx.Barrier(workers + 1)
    procs = [ctx.Process(target=_reader, args=(port, ca, sid, start, seconds, i, queue))
             for i in range(workers)]  # fmt: skip
    for p in procs:
        p.start()
    start.wait(timeout=120)
    results = [queue.get(timeout=seconds + 60) for _ in procs]
    elapsed = seconds
    for p in procs:
        p.join()
    errors = [r for r in results if not isinstance(r, int)]
    if errors:
        raise RuntimeError(f"reads failed: {errors[0]}")
    return sum(int(r) for r in results) / elapsed


def bench_start(client: httpx.Client, sid: str, target: Any, host: int, rounds: int) -> float:
    times: list[float] = []
    with Listener(target, [vm_cmd_channel(host), vm_cmd_channel(host + 1)]) as listener:
        for i in range(rounds):
            vm = 10_001 + 3 * i  # vm_id % 3 != 0: stopped
            t0 = time.perf_counter()
            reply = client.post("/api", json={"action": "vm_start", "sid": sid,
                                              "filters": {"id": vm}}).json()  # fmt: skip
            notes = listener.wait(5, max_count=1)
            elapsed = (time.perf_counter() - t0) * 1000
            assert reply["status"] == 0, reply
            if not notes or notes[0].payload["vm_id"] != vm:
                raise RuntimeError(f"no NOTIFY for VM {vm}: {notes}")
            times.append(elapsed)
            client.post("/api", json={"action": "vm_stop", "sid": sid, "filters": {"id": vm}})
            listener.wait(0.05)
    return statistics.median(times)


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    args = parser.parse_args()
    rounds, seconds, starts = (30, 5.0, 10) if args.quick else (200, 20.0, 50)
    # VM ids from 10,000, as the figures expect (no VM of this bench ever starts)
    with (
        scratch_dir("qvd-bench-api-") as base,
        throwaway_database(base, spread_vm_ids=False) as db,
    ):
        target = db.target
        t0 = time.monotonic()
        host = populate(db.engine)
        db.engine.dispose()  # its connections are not needed while the API runs
        print(f"populated {VMS} VMs in {time.monotonic() - t0:.1f} s", flush=True)
        with api_server(base, db) as port:
            api = f"https://127.0.0.1:{port}/"
            ca = str(base / "cert.pem")
            with httpx.Client(base_url=api, verify=ca, timeout=30) as client:
                body = {"login": "bench", "password": PASSWORD}
                sid = client.post("/api/v1/sessions", json=body).json()["sid"]
                # warm up
                client.post("/api", json={"action": "vm_get_list", "sid": sid, "block": 1})
                p50, p95, total = bench_list(client, sid, rounds)
                print(f"list of {VMS} VMs, filtered ({total} match), page of 100: "
                      f"p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)  # fmt: skip
                reads = bench_reads(port, ca, sid, seconds, workers=4)
                print(f"simple reads (GET /api/v1/vms/<id>, 4 clients): {reads:.0f}/s", flush=True)
                start = bench_start(client, sid, target, host, starts)
                print(f"vm_start request to vm_cmd NOTIFY: p50 {start:.1f} ms", flush=True)
            print(f"list10k_p50_ms={p50:.1f} reads_per_s={reads:.0f} start_to_cmd_ms={start:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
