#!/usr/bin/env python3
"""Benchmark of running QVD as a fleet (issue #17).

- failover: PostgreSQL failover → every daemon back (s), from ``bench/failover.py``
  (the HA part of the issue) when it is there; ``n/a`` otherwise;
- policy tick: one pass of the policy leader (read the policies and 10,000 desktops'
  runtime, rank the warm pool from four weeks of session history, decide, act) on a
  throwaway PostgreSQL with bulk-inserted rows and a realistic set of policies (idle
  stop, idle suspend, maximum session, scheduled start and stop, a warm pool); the p50
  of the steady passes (after the first, which asks for what is due);
- pool login vs cold login, through the real L7R of a real HKD with a real LXC
  desktop (the ``test`` image): cold = the VM is stopped, ``connect_to_vm`` → 101;
  pool = the node's own policy leader has started the VM for its warm pool (its user
  usually connects at this hour, by ``session_history``), ``connect_to_vm`` → 101.

Run as root (the LXC node):

    .venv/bin/python bench/fleet.py [--quick] [--runs N]

The last line is ``failover_s=… policy_tick_ms=… pool_login_ms=… cold_login_ms=…``
(p50s; targets: failover < 15 s, pool login < 300 ms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import logging
import statistics
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, text

from benchkit import (
    bench_node,
    exit_on_sigterm,
    run_main,
    scratch_dir,
    seed_vms,
    throwaway_database,
)
from l7r import add_users, cold_runs, stop_vm, timed_connect, wait_user_state
from qvd.config import Config
from qvd.db import DatabaseTarget, Listener
from qvd.di import ensure_image
from qvd.policy.runner import PolicyRunner

BENCH = Path(__file__).resolve().parent


# ---- failover (bench/failover.py, the HA part) --------------------------------------------
def failover_seconds(quick: bool) -> str:
    """``bench.failover.measure(quick)`` when bench/failover.py exists in this tree."""
    path = BENCH / "failover.py"
    if not path.exists():
        return "n/a"
    spec = importlib.util.spec_from_file_location("failover", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return f"{float(module.measure(quick)['failover_s']):.1f}"  # its dict of figures


# ---- policy tick ----------------------------------------------------------------------------
def seed_policies(engine: Engine, now: dt.datetime) -> None:
    """A realistic tenant: idle rules, a maximum session, a working day's schedule (not
    due now), a warm pool; four weeks of connects (10 % of the desktops, at this hour)."""
    at = (now.hour * 60 + now.minute + 180) % 1440  # three hours away: not due
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO policies (tenant_id, name, kind, minutes, at_minute, weekdays, timezone,"
            " size) VALUES"
            " (1, 'idle stop', 'idle_stop', 120, NULL, 127, 'UTC', NULL),"
            " (1, 'idle suspend', 'idle_suspend', 30, NULL, 127, 'UTC', NULL),"
            " (1, 'max session', 'max_session', 600, NULL, 127, 'UTC', NULL),"
            " (1, 'morning', 'scheduled_start', NULL, :at, 31, 'Europe/Madrid', NULL),"
            " (1, 'evening', 'scheduled_stop', NULL, :at2, 31, 'Europe/Madrid', NULL),"
            " (1, 'pool', 'warm_pool', 30, NULL, 127, 'Europe/Madrid', 200)"
        ), {"at": at, "at2": (at + 600) % 1440})  # fmt: skip
        conn.execute(text(
            "INSERT INTO session_history (kind, result, tenant_id, user_id, login, vm_id,"
            " started_at)"
            " SELECT 'connect', 'ok', 1, v.user_id, 'u', v.id,"
            "        :now - make_interval(weeks => w) + make_interval(mins => (v.id % 30))"
            "   FROM vms v CROSS JOIN generate_series(1, 4) w WHERE v.id % 10 = 0"
        ), {"now": now})  # fmt: skip
        # background history: other hours, other desktops (what the index must skip)
        conn.execute(text(
            "INSERT INTO session_history (kind, result, tenant_id, user_id, login, vm_id,"
            " started_at)"
            " SELECT 'connect', 'ok', 1, v.user_id, 'u', v.id,"
            "        :now - make_interval(days => d, hours => (v.id % 7) + 2)"
            "   FROM vms v CROSS JOIN generate_series(1, 28) d WHERE v.id % 10 = 3"
        ), {"now": now})  # fmt: skip
        conn.execute(text("ANALYZE"))


def policy_tick_ms(quick: bool) -> float:
    runs = 5 if quick else 20
    with (
        scratch_dir("qvd-bench-fleet-tick-") as tmp,
        throwaway_database(tmp, spread_vm_ids=False) as db,
    ):
        seed_vms(db.engine, "bench-password", vms=10_000, users=1_000)
        now = dt.datetime.now(dt.UTC)
        seed_policies(db.engine, now)
        config = Config()
        runner = PolicyRunner(db.engine, db.target, lambda: config, stop=threading.Event(),
                              clock=lambda: now)  # fmt: skip
        try:
            assert runner.leadership.try_lead()
            took: list[float] = []
            first = None
            for index in range(runs + 1):
                t0 = time.perf_counter()
                report = runner.tick()
                ms = (time.perf_counter() - t0) * 1000
                if index == 0:
                    first = (ms, report.done)
                else:
                    took.append(ms)
            assert first is not None
            print(f"policy tick, 10,000 VMs: first {first[0]:.0f} ms ({first[1]} actions), "
                  f"then p50 {statistics.median(took):.0f} ms, max {max(took):.0f} ms "
                  f"over {runs}", flush=True)  # fmt: skip
            return statistics.median(took)
        finally:
            runner.leadership.release()


# ---- pool login vs cold login -------------------------------------------------------------
def _wait_running(engine: Engine, vm: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT vm_state, vma_ok_ts IS NOT NULL FROM vm_runtimes WHERE vm_id = :v"),
                {"v": vm},
            ).one()
        if tuple(row) == ("running", True):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the warm pool did not start VM {vm}")


def pool_runs(
    engine: Engine, target: DatabaseTarget, port: int, host: int, vm: int, runs: int
) -> list[float]:
    """``runs`` times: the VM stopped, the node's policy leader starts it for its warm
    pool (its user connected at this hour these last weeks), then connect → 101."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO session_history (kind, result, tenant_id, user_id, login, vm_id,"
            " started_at)"
            " SELECT 'connect', 'ok', 1, v.user_id, 'u0', v.id,"
            "        :now - make_interval(weeks => w) + interval '5 minutes'"
            "   FROM vms v CROSS JOIN generate_series(1, 4) w WHERE v.id = :v"
        ), {"now": now, "v": vm})  # fmt: skip
    took: list[float] = []
    with Listener(target, ["vm_changed"]) as listener:
        for index in range(runs):
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM policies"))
            stop_vm(engine, listener, vm, host)
            with engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO policies (tenant_id, name, kind, minutes, size)"
                    " VALUES (1, 'pool', 'warm_pool', 30, 1)"
                ))  # fmt: skip
            _wait_running(engine, vm)
            ms, steps = timed_connect(port, vm)
            took.append(ms)
            print(f"pool {index + 1}: 101 after {ms:.0f} ms ({steps})", flush=True)
            wait_user_state(engine, vm, "disconnected")
    return took


def logins(quick: bool, runs: int) -> tuple[float, float]:
    image = ensure_image("test")
    with bench_node("qvd-bench-fleet-") as node:
        engine, target = node.db.engine, node.db.target
        host, _ = node.seed(image, 1)
        vm, _pump = add_users(engine, "u0")
        port = node.start_l7r(**{"policy.tick.delay": "0.2"})
        cold = cold_runs(target, engine, port, host, vm, runs)
        pool = pool_runs(engine, target, port, host, vm, runs)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM policies"))
        print(f"cold login: p50 {statistics.median(cold):.0f} ms; pool login: p50 "
              f"{statistics.median(pool):.0f} ms ({runs} runs each)", flush=True)  # fmt: skip
        return statistics.median(pool), statistics.median(cold)


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (under a minute)")
    parser.add_argument("--runs", type=int, default=None, help="cold and pool logins")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 10)
    logging.basicConfig(level=logging.WARNING)
    tick = policy_tick_ms(args.quick)
    pool, cold = logins(args.quick, runs)
    failover = failover_seconds(args.quick)
    print(f"failover_s={failover} policy_tick_ms={tick:.0f} pool_login_ms={pool:.0f} "
          f"cold_login_ms={cold:.0f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    run_main(main)
