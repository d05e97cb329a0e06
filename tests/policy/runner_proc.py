"""A policy runner in a process of its own (the leader-election tests start two): reads
``{"params": libpq parameters, "tick": seconds}`` on stdin, prints ``ready``, runs until
SIGTERM (or until killed)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

from qvd.config import Config
from qvd.db import make_engine
from qvd.db.target import DatabaseTarget
from qvd.policy.runner import PolicyRunner


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.stdin.readline())
    target = DatabaseTarget(spec["params"])
    config = Config().with_overrides({"policy.tick.delay": str(spec["tick"])}, source="test")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine = make_engine(target)
    runner = PolicyRunner(engine, target, lambda: config, stop=stop)
    print("ready", flush=True)
    runner.run()
    engine.dispose()


if __name__ == "__main__":
    main()
