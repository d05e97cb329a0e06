#!/usr/bin/env python3
"""Benchmark of the node daemon with real LXC containers and a real PostgreSQL.

- claim: a ``vm_cmd = 'start'`` commit → the HKD's claim (``vm_state = 'starting'``),
  as seen by a LISTEN on ``vm_changed``;
- ready: the same commit → ``running`` (container up, VMA answered), one VM at a time;
- burst: N VMs asked to start at once → every one ``running`` (starts per minute);
- RAM: cgroup memory of the idle containers of the burst, per VM;
- unprivileged: 1 when every container of the burst runs in a user namespace (its
  root is an unprivileged host uid), else 0.

Everything (cluster, database, bridge, storage) is made in temporary places and
removed at the end.

    .venv/bin/python bench/hkd.py [--quick] [--runs N] [--burst N]

The last line is ``claim_p50_ms=… ready_p50_ms=… starts_per_min=… ram_per_vm_mb=…
unprivileged=…`` (targets: claim < 50 ms, ready < 500 ms, ≥ 300 starts/min,
RAM ≤ 25 MiB, unprivileged=1).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time

from sqlalchemy import Engine, text

from benchkit import bench_node, exit_on_sigterm, percentile
from qvd.db import Listener
from qvd.di import ensure_image
from qvd.hkd.backends.lxc import LxcBackend


def command(engine: Engine, vm_ids: list[int], cmd: str, host: int) -> float:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE vm_runtimes SET host_id = :h, vm_cmd = :c WHERE vm_id = ANY(:v)"),
            {"h": host, "c": cmd, "v": vm_ids},
        )
    return time.monotonic()


def wait_states(
    listener: Listener, vm_ids: set[int], until: str, t0: float, timeout: float = 120
) -> dict[int, dict[str, float]]:
    """Seconds from t0 to the first time each VM was seen in each state, until every VM
    has reached ``until``."""
    seen: dict[int, dict[str, float]] = {vm: {} for vm in vm_ids}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(until in states for states in seen.values()):
            return seen
        for note in listener.wait(0.2):
            vm, state = note.payload.get("vm_id"), str(note.payload.get("vm_state"))
            if vm in seen and state not in seen[vm]:
                seen[vm][state] = time.monotonic() - t0
    missing = [vm for vm, states in seen.items() if until not in states]
    raise RuntimeError(f"VMs {missing} never reached {until}: {seen}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (under a minute)")
    parser.add_argument("--runs", type=int, default=None, help="single-VM start/stop cycles")
    parser.add_argument("--burst", type=int, default=None, help="VMs started at once")
    args = parser.parse_args()
    exit_on_sigterm()
    runs = args.runs or (5 if args.quick else 20)
    burst = args.burst or (10 if args.quick else 20)
    logging.basicConfig(level=logging.WARNING)

    image = ensure_image("test")
    with bench_node("qvd-bench-hkd-") as node:
        engine, target = node.db.engine, node.db.target
        host, vm_ids = node.seed(image, burst)
        hkd = node.start_hkd(**{"internal.hkd.workers": "12"})
        backend = hkd.backend
        assert isinstance(backend, LxcBackend)
        claims: list[float] = []
        ready: list[float] = []
        with Listener(target, ["vm_changed"]) as listener:
            # warm-up: unpack the base once, outside the figures
            t0 = command(engine, vm_ids[:1], "start", host)
            wait_states(listener, set(vm_ids[:1]), "running", t0)
            command(engine, vm_ids[:1], "stop", host)
            wait_states(listener, set(vm_ids[:1]), "stopped", time.monotonic())
            for _ in range(runs):
                vm = vm_ids[0]
                t0 = command(engine, [vm], "start", host)
                seen = wait_states(listener, {vm}, "running", t0)[vm]
                claims.append(seen["starting"] * 1000)
                ready.append(seen["running"] * 1000)
                command(engine, [vm], "stop", host)
                wait_states(listener, {vm}, "stopped", time.monotonic())
            t0 = command(engine, vm_ids, "start", host)
            reached = {
                vm: states["running"]
                for vm, states in wait_states(listener, set(vm_ids), "running", t0).items()
            }
            burst_s = max(reached.values())
            time.sleep(2.0)  # let the containers settle to idle
            ram = [backend.memory_usage(v) / 2**20 for v in vm_ids]
            userns = all(backend.user_namespace(v) is not None for v in vm_ids)
            command(engine, vm_ids, "stop", host)
            wait_states(listener, set(vm_ids), "stopped", time.monotonic())
        print(
            f"single VM, {runs} runs: claim p50 {statistics.median(claims):.1f} ms, "
            f"p95 {percentile(claims, 0.95):.1f} ms; ready p50 {statistics.median(ready):.0f} "
            f"ms, p95 {percentile(ready, 0.95):.0f} ms"
        )
        print(
            f"burst of {burst}: all running after {burst_s:.2f} s; ready p50 "
            f"{statistics.median(reached.values()) * 1000:.0f} ms; idle RAM per VM "
            f"{statistics.mean(ram):.1f} MiB"
        )
        node.figures = (
            f"claim_p50_ms={statistics.median(claims):.1f} "
            f"claim_p95_ms={percentile(claims, 0.95):.1f} "
            f"ready_p50_ms={statistics.median(ready):.0f} "
            f"ready{burst}_p50_ms={statistics.median(reached.values()) * 1000:.0f} "
            f"starts_per_min={burst / burst_s * 60:.0f} "
            f"ram_per_vm_mb={statistics.mean(ram):.1f} "
            f"unprivileged={int(userns)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
