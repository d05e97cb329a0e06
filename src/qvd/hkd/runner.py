"""Running the HKD as a foreground service: logging, signals, clean stop."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from qvd.config import Config
from qvd.hkd.daemon import Hkd, ServiceFactory
from qvd.hkd.metrics import HkdMetrics

__all__ = ["configure_logging", "run_hkd"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(config: Config, *, to_file: bool = False) -> Path | None:
    """Log at ``log.level`` to stderr, or to ``log.filename`` (returned) when asked."""
    level = config.get("log.level").upper()
    if not to_file:
        logging.basicConfig(level=level, stream=sys.stderr, format=_FORMAT)
        return None
    path = config.get_path("log.filename")
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=level, filename=path, format=_FORMAT)
    return path


def run_hkd(
    config: Config,
    stop: threading.Event | None = None,
    services: Sequence[ServiceFactory] = (),
    on_ready: Callable[[Hkd], None] | None = None,
    on_stopping: Callable[[Hkd], None] | None = None,
    metrics: HkdMetrics | None = None,
) -> None:
    """Start the HKD (hosting ``services``), run until SIGTERM/SIGINT (or ``stop``),
    then stop it. ``on_ready`` runs once it is registered and its services listen,
    ``on_stopping`` when it begins to stop (systemd's readiness: qvd.node.sdnotify)."""
    done = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    hkd = Hkd(config, services=services, metrics=metrics)
    try:
        hkd.start()
        print(f"HKD running as node {hkd.settings.nodename!r}", flush=True)
        if on_ready is not None:
            on_ready(hkd)
        while not done.wait(0.5):
            if hkd.wait(0):  # stopped by a host command
                return
        if on_stopping is not None:
            on_stopping(hkd)
        hkd.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
