"""The steps ``qvd up`` and ``qvd node join`` share: install what the hypervisor
needs, register this node, start its HKD (with the L7R), and run in the foreground
until SIGINT/SIGTERM, telling systemd when the node is ready and when it stops."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from sqlalchemy import Engine

from qvd.config import Config
from qvd.config.names import NameRuleError
from qvd.db import DatabaseTarget, EmbeddedClusterError
from qvd.hkd.daemon import Hkd, HkdStartError
from qvd.hkd.metrics import HkdMetrics
from qvd.node.daemons import node_services
from qvd.node.demo import register_host
from qvd.node.hostneeds import HostNeeds, PackageError, ensure_packages, host_needs
from qvd.node.sdnotify import Notifier, notifier_from_env, watchdog_interval

__all__ = [
    "NodeStartError",
    "install_needs",
    "keep_watchdog",
    "register_node",
    "start_hkd",
    "stop_on_signals",
]


class NodeStartError(EmbeddedClusterError):
    """A part of the node could not start; the message says which and why."""


def install_needs(config: Config, say: Callable[[str], None]) -> HostNeeds:
    """What ``vm.hypervisor`` needs of this machine, its missing packages installed."""
    hypervisor = config.get("vm.hypervisor")
    needs = host_needs(hypervisor)
    try:
        ensure_packages(needs.packages, f"vm.hypervisor = {hypervisor}", say)
    except PackageError as exc:
        raise NodeStartError(str(exc)) from None
    return needs


def register_node(engine: Engine, name: str, address: str) -> tuple[int, bool]:
    """This node's ``hosts`` row (id, created now), its name and address checked."""
    try:
        return register_host(engine, name, address)
    except NameRuleError as exc:
        raise NodeStartError(
            f"this node cannot register itself: {exc}; set `nodename` in its configuration"
        ) from None


def start_hkd(config: Config, target: DatabaseTarget) -> Hkd:
    """The node daemon, started, hosting the node's services (the L7R)."""
    metrics = HkdMetrics()  # the HKD's and the L7R's figures, one registry (/metrics)
    hkd = Hkd(
        config, target=target, services=node_services(config, target, metrics=metrics),
        metrics=metrics,
    )  # fmt: skip
    try:
        hkd.start()
    except HkdStartError as exc:
        raise NodeStartError(f"the node daemon cannot start: {exc}") from None
    return hkd


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` while in the block."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def keep_watchdog(
    alive: Callable[[], bool], stop: threading.Event, notifier: Notifier | None = None
) -> threading.Thread | None:
    """When systemd asks for a watchdog (``WatchdogSec=``), send ``WATCHDOG=1`` every
    half period while ``alive()`` holds; a node that stops answering is restarted."""
    notify = notifier or notifier_from_env()
    every = watchdog_interval()
    if every is None or not notify.enabled:
        return None

    def loop() -> None:
        while not stop.wait(every):
            if alive():
                notify.watchdog()

    thread = threading.Thread(target=loop, name="sd-watchdog", daemon=True)
    thread.start()
    return thread
