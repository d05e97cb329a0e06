"""The node's daemons as services: where their logs go (the journal or stderr) and
their readiness (sd_notify), for ``qvd hkd``, ``qvd api`` and ``qvd node join``."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from qvd.api import serve
from qvd.config import Config
from qvd.hkd.daemon import Hkd
from qvd.hkd.metrics import HkdMetrics
from qvd.hkd.runner import configure_logging, run_hkd
from qvd.node.bringup import keep_watchdog, stop_on_signals
from qvd.node.daemons import node_services
from qvd.node.journal import JOURNAL_SOCKET, stderr_is_journal, use_journal
from qvd.node.sdnotify import notifier_from_env

__all__ = ["LOG_MODES", "serve_api", "serve_hkd", "setup_logging"]

LOG_MODES = ("auto", "journal", "stderr")


def setup_logging(
    config: Config, identifier: str, mode: str = "auto", journal_socket: Path | None = None
) -> str:
    """Logs to the journal (structured) when ``mode`` is ``journal``, or ``auto`` and
    stderr is the journal's stream; else plain lines on stderr. Returns where."""
    if mode not in LOG_MODES:
        raise ValueError(f"--log {mode!r}: use one of {', '.join(LOG_MODES)}")
    if mode == "journal" or (mode == "auto" and stderr_is_journal()):
        use_journal(
            identifier,
            config.get("log.level"),
            host=config.raw("nodename"),
            socket_path=journal_socket or JOURNAL_SOCKET,
        )
        return "journal"
    configure_logging(config)
    return "stderr"


def serve_hkd(config: Config) -> None:
    """``qvd hkd``: the HKD with its L7R until SIGTERM; READY=1 once it is registered
    and its L7R listens, STOPPING=1 when it begins to stop."""
    notifier = notifier_from_env()
    stop_watchdog = threading.Event()

    def ready(hkd: Hkd) -> None:
        host = hkd.host
        notifier.ready(f"node {hkd.settings.nodename} running" + (f" (host {host.id})"
                       if host is not None else ""))  # fmt: skip
        keep_watchdog(lambda: not hkd.wait(0), stop_watchdog, notifier)
        logging.getLogger("qvd.node").info(
            "node %s ready", hkd.settings.nodename,
            extra={"host_id": host.id if host is not None else None},
        )  # fmt: skip

    def stopping(hkd: Hkd) -> None:
        notifier.stopping("stopping")

    try:
        metrics = HkdMetrics()  # the HKD's and the L7R's figures, one registry (/metrics)
        run_hkd(config, services=node_services(config, metrics=metrics), metrics=metrics,
                on_ready=ready, on_stopping=stopping)  # fmt: skip
    finally:
        stop_watchdog.set()


def serve_api(config: Config) -> None:
    """``qvd api``: the admin API until SIGTERM/SIGINT; READY=1 once it serves,
    STOPPING=1 when it begins to stop. It is served from a thread so that the signals
    stay ours (uvicorn would take them, and re-raise them at its end)."""
    notifier = notifier_from_env()
    ready, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve(config, ready=ready, stop=stop)
        except BaseException as exc:
            failure.append(exc)
        finally:
            ready.set()
            stop.set()

    worker = threading.Thread(target=run, name="qvd-api", daemon=True)
    with stop_on_signals(stop):
        worker.start()
        ready.wait()
        if not failure:
            notifier.ready("admin API serving")
        stop.wait()
        notifier.stopping()
        worker.join(30)
    if failure:
        raise failure[0]
