"""What every bench shares that needs only the standard library (cheap to import in
the client processes benches spawn)."""

from __future__ import annotations

import signal

__all__ = ["cleanup_begins", "exit_on_sigterm"]


def exit_on_sigterm() -> None:
    """SIGTERM (a timeout's kill) ends the bench like Ctrl-C: through its ``finally``,
    which removes the cluster, bridge, route and nftables tables it made. The cleanup
    runs once: a second SIGTERM during it is ignored."""

    def stop(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def cleanup_begins() -> None:
    """From here on (the ``finally`` of a bench) SIGTERM waits: the cleanup runs whole."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
