"""Running the HKD as a foreground service: logging, signals, clean stop."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from qvd.config import Config
from qvd.hkd.daemon import Hkd

__all__ = ["configure_logging", "run_hkd"]


def configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.get("log.level").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_hkd(config: Config, stop: threading.Event | None = None) -> None:
    """Start the HKD, run until SIGTERM/SIGINT (or ``stop``), then stop it."""
    done = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    hkd = Hkd(config)
    try:
        hkd.start()
        print(f"HKD running as node {hkd.settings.nodename!r}", flush=True)
        while not done.wait(0.5):
            if hkd.wait(0):  # stopped by a host command
                return
        hkd.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
