"""What a PostgreSQL failover costs a user whose connect is in flight (issue #17).

    .venv/bin/python bench/failover_connect.py [--quick]

Two clusters in synchronous streaming replication (tests/pgcluster.py), the real L7R
on their two-host target, a real VMA, a stand-in node that runs the VM once allowed
(tests/db/inflight_stage.py). Per round:

- ``baseline_s``: no failover; from the moment the node may run the VM (the connect
  waiting for it) until the client has its 101;
- ``waiting_s``: the same connect, the primary crashed while it waits, the standby
  promoted once the connect met the dead primary; from the promotion (the node runs
  the VM at once) until the 101;
- ``login_s``: a connect sent while there is no primary (its login meets the dead
  primary); from the promotion until the 101.

``extra_s`` is ``waiting_s - baseline_s``: the delay a failover adds to a connect in
flight beyond the promotion itself. The worst of 1 (--quick) or 3 rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchkit import exit_on_sigterm, run_main
from qvd.db import make_engine

__all__ = ["main", "measure"]


def _root_on_path() -> None:
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.append(root)


def _stopped_again(d: Any) -> None:
    """The VM stopped and its session free, for the next connect."""
    from sqlalchemy import text

    with d.lab.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE vm_runtimes SET vm_state = 'stopped', vm_cmd = NULL, vm_address = NULL "
                " WHERE vm_id = :v"
            ),
            {"v": d.lab.seed.vm_id},
        )


@contextlib.contextmanager
def _staged(run: Path) -> Iterator[tuple[Any, ThreadPoolExecutor, Any]]:
    """A fresh replicated pair, a pool for the client and the stage on the pair."""
    from tests.db import inflight_stage as s
    from tests.pgcluster import replicated_pair

    with (
        replicated_pair("qvd-bench-pg-inflight-") as pair,
        ThreadPoolExecutor(2) as pool,
    ):
        engine = make_engine(pair.target())
        try:
            with s.desk(pair.target(), engine, run, **{"database.failover_wait": "60"}) as d:
                yield pair, pool, d
        finally:
            engine.dispose()


def _one_round() -> dict[str, float]:
    _root_on_path()
    from tests.conftest import scratch_dir
    from tests.db import inflight_stage as s

    figures: dict[str, float] = {}
    run = scratch_dir("qvd-bench-inflight-")
    try:
        with _staged(run) as (pair, pool, d):
            # no failover
            with s.connecting(d.lab, pool) as connect:
                s.wait_for(lambda: d.vm_cmd() == "start", "the start request")
                allowed = time.monotonic()
                d.node.allowed.set()
                connect.answer.result(s.WAIT)
                figures["baseline_s"] = time.monotonic() - allowed
            s.wait_for(lambda: d.session() == ("disconnected", None), "released")
            d.node.allowed.clear()
            _stopped_again(d)
            # the primary dies while the connect waits for its VM
            with s.watching_retries() as retries, s.connecting(d.lab, pool) as connect:
                s.wait_for(lambda: d.vm_cmd() == "start", "the start request")
                retries.expect("reading its state")
                pair.stop_primary("immediate")
                if not retries.seen.wait(s.WAIT):
                    raise RuntimeError("the connect never met the dead primary")
                pair.promote()
                promoted = time.monotonic()
                d.node.allowed.set()
                head, _, _ = connect.answer.result(s.WAIT)
                figures["waiting_s"] = time.monotonic() - promoted
                if not head.startswith(b"HTTP/1.1 101"):
                    raise RuntimeError(f"the connect failed: {head!r}")
        with _staged(run) as (pair, pool, d):
            d.node.allowed.set()
            with s.watching_retries() as retries:
                retries.expect("authenticating")
                pair.stop_primary("immediate")
                with s.connecting(d.lab, pool) as connect:
                    if not retries.seen.wait(s.WAIT):
                        raise RuntimeError("the login never met the dead primary")
                    pair.promote()
                    promoted = time.monotonic()
                    head, _, _ = connect.answer.result(s.WAIT)
                    figures["login_s"] = time.monotonic() - promoted
                    if not head.startswith(b"HTTP/1.1 101"):
                        raise RuntimeError(f"the connect failed: {head!r}")
    finally:
        shutil.rmtree(run, ignore_errors=True)
    figures["extra_s"] = figures["waiting_s"] - figures["baseline_s"]
    return figures


def measure(quick: bool) -> dict[str, float]:
    rounds = [_one_round() for _ in range(1 if quick else 3)]
    keys = ("baseline_s", "waiting_s", "login_s", "extra_s")
    return {key: max(r[key] for r in rounds) for key in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")  # records reach the retry hook; only
    for handler in logging.getLogger().handlers:  # the critical ones are printed
        handler.setLevel(logging.CRITICAL)
    exit_on_sigterm()
    started = time.monotonic()
    figures = measure(args.quick)
    print(f"# {time.monotonic() - started:.1f} s in all", file=sys.stderr)
    print(" ".join(f"{k}={v:.2f}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    run_main(main)
