#!/usr/bin/env python3
"""Benchmark of a PostgreSQL failover under the daemons: failover → all daemons back.

Two throwaway clusters in synchronous streaming replication; a node's HKD (the fake
backend in-process: what is measured is its database side) and the real API (TLS)
on the two-host target ``host=…,… target_session_attrs=read-write``; a desktop runs.
The primary is crashed (``pg_ctl stop -m immediate``) and the standby promoted
(``pg_ctl promote -w``), as Patroni does once it has found the leader dead. Measured
from the crash: ``promote_s`` (the standby takes writes), ``api_back_s`` (an API
action answers again), ``hkd_back_s`` (the HKD has written a heartbeat on the new
primary), ``failover_s`` (both). Patroni's own detection (its leader TTL) comes on
top: see docs/ha-postgresql.md.

    .venv/bin/python bench/failover.py [--quick]

The last line is ``failover_s=… api_back_s=… hkd_back_s=… promote_s=… fenced=0|1``
(the worst of the rounds: 1 with --quick, 3 otherwise). ``bench/fleet.py`` imports
:func:`measure` (``from failover import measure``, bench/ being on its path).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchkit import exit_on_sigterm, run_main

__all__ = ["main", "measure"]


def _stage() -> ModuleType:
    """tests/db/failover_stage.py (the repository's root put on the path: this bench
    is run as ``bench/failover.py`` or loaded by bench/fleet.py)."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.append(root)
    from tests.db import failover_stage

    return failover_stage


def _one_round() -> dict[str, float]:
    stage_kit = _stage()
    with stage_kit.failover_stage() as stage:
        _desktop_running(stage, stage_kit.wait_for)
        figures: dict[str, float] = stage_kit.fail_over_and_time(stage)
        figures["fenced"] = float(stage.hkd.fenced or stage.hkd.fencer.fence_count > 0)
        return figures


def _desktop_running(stage: Any, wait_for: Any) -> None:
    vm_id = stage.world.vms["A"]
    answer = stage.act("vm_start", filters={"id": vm_id})
    if answer["status"] != 0:
        raise RuntimeError(f"vm_start failed: {answer}")
    wait_for(lambda: stage.vm_state(vm_id) == "running", timeout=60)


def measure(quick: bool) -> dict[str, float]:
    """Failover figures in seconds, the worst of 1 (quick) or 3 rounds; ``fenced`` is
    1.0 if the node fenced itself in any round (it must not)."""
    rounds = [_one_round() for _ in range(1 if quick else 3)]
    keys = ("failover_s", "api_back_s", "hkd_back_s", "promote_s", "fenced")
    return {key: max(r[key] for r in rounds) for key in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    args = parser.parse_args()
    logging.basicConfig(level="ERROR")
    exit_on_sigterm()
    started = time.monotonic()
    figures = measure(args.quick)
    print(f"# {time.monotonic() - started:.1f} s in all", file=sys.stderr)
    print(
        " ".join(f"{k}={int(v)}" if k == "fenced" else f"{k}={v:.2f}" for k, v in figures.items())
    )
    return 0


if __name__ == "__main__":
    run_main(main)
