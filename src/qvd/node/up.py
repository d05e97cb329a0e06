"""``qvd up``: the all-in-one node in the foreground.

It brings up the database (the embedded cluster unless the configuration points at an
external server), applies migrations, creates the superadmin on first run, builds or
reuses the demo image, starts the node daemon (HKD) with its L7R and the admin API,
makes the demo desktop, prints how to reach everything and runs until SIGINT or
SIGTERM, then stops what it started.

With ``vm.hypervisor = kvm`` it first installs the hypervisor's Debian packages when
they are missing, builds the demo image as a qcow2, and boots the demo desktop before
it says the node is up, with a progress line while the guest boots (under TCG, a
machine without hardware virtualisation, that takes tens of seconds).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from qvd.api import api_endpoint, login_instructions, serve
from qvd.config import Config
from qvd.db import (
    DatabaseTarget,
    EmbeddedCluster,
    EmbeddedClusterError,
    database_target,
    embedded_cluster,
    initialize_database,
    make_engine,
)
from qvd.di import ensure_image
from qvd.hkd.addressing import vm_network
from qvd.hkd.daemon import Hkd
from qvd.hkd.egress import EgressSettings, how_to_enable
from qvd.hkd.pidlock import LockHeld, PidLock
from qvd.hkd.runner import configure_logging
from qvd.node.bringup import (
    NodeStartError,
    install_needs,
    register_node,
    start_hkd,
    stop_on_signals,
)
from qvd.node.demo import (
    DemoDesktop,
    desktop_state,
    ensure_demo_desktop,
    import_demo_image,
    start_desktop,
)
from qvd.node.hostneeds import HostNeeds
from qvd.node.sdnotify import notifier_from_env
from qvd.node.units import systemd_is_running
from qvd.portal import PortalServer

__all__ = [
    "NodeAlreadyRunning",
    "NodeStartError",
    "UpReport",
    "boot_demo_desktop",
    "bring_up",
    "run_up",
]


class NodeAlreadyRunning(EmbeddedClusterError):
    """Another ``qvd up`` holds this node's lock."""


@dataclass(slots=True)
class UpReport:
    """What ``bring_up`` started, for the summary and for stopping."""

    cluster: EmbeddedCluster | None
    database: str
    schema: str
    superadmin_password: str | None
    demo_image: Path | None = None
    hkd: Hkd | None = None
    host_id: int | None = None
    host_address: str | None = None
    desktop: DemoDesktop | None = None
    api: ApiThread | None = None
    needs: HostNeeds | None = None
    target: DatabaseTarget | None = None


def bring_up(config: Config, say: Callable[[str], None]) -> UpReport:
    """Start (or reuse) the database and bring its schema to head."""
    target = database_target(config)
    cluster: EmbeddedCluster | None = None
    if target.embedded:
        cluster = embedded_cluster(config)
        say(f"embedded PostgreSQL: data in {cluster.datadir}")
        if cluster.initialize():
            say("  created a new cluster")
        if cluster.is_running():
            say("  already running (left over from an earlier run): reusing it")
        else:
            cluster.start()
            say(f"  started on socket {cluster.socket_dir} and 127.0.0.1:{cluster.port}")
        if cluster.ensure_database():
            say(f"  created role and database {cluster.dbname!r}")
        target = cluster.target()
    try:
        return _bring_up_rest(config, target, cluster, say)
    except BaseException:
        if cluster is not None:  # leave nothing running behind a failed start
            cluster.stop()
        raise


def _bring_up_rest(
    config: Config,
    target: DatabaseTarget,
    cluster: EmbeddedCluster | None,
    say: Callable[[str], None],
) -> UpReport:
    engine = make_engine(target)
    try:
        result = initialize_database(engine)
    finally:
        engine.dispose()
    if result.migrated_from != result.schema:
        say(f"schema migrated from {result.migrated_from or 'empty'} to {result.schema}")
    report = UpReport(
        cluster=cluster,
        database=target.describe(),
        schema=result.schema,
        superadmin_password=result.superadmin_password,
        target=target,
    )
    report.needs = needs = install_needs(config, say)
    recipe = config.get("node.demo.recipe").strip()
    if recipe:
        report.demo_image = _demo_image(config, recipe, needs.image_format, say)
    report.hkd, report.host_id, report.host_address, report.desktop = _start_node(
        config, target, report.demo_image, needs, say
    )
    try:
        report.api = ApiThread(config)
        report.api.start()
    except BaseException:
        report.hkd.stop()
        raise
    say(f"admin API listening on {report.api.endpoint.url}")
    return report


def _demo_image(config: Config, recipe: str, image_format: str, say: Callable[[str], None]) -> Path:
    """The demo image of ``recipe`` in the hypervisor's format, built or reused."""
    say(f"disk image {recipe!r} ({image_format}): building it or reusing the cached one")
    image = ensure_image(
        recipe,
        progress=lambda p: say(f"  {p.render()}"),
        cache=config.get_path("path.cache.di"),
        fmt=image_format,
    )
    say(f"  {image}")
    return image


class ApiThread:
    """The admin API served from a thread of ``qvd up``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.endpoint = api_endpoint(config)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="qvd-api", daemon=True)

    def _run(self) -> None:
        try:
            serve(self.config, ready=self._ready, stop=self._stop)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            self.stop()
            reason = self._error or "it did not start within 60 s"
            raise NodeStartError(f"the admin API cannot start: {reason}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _start_node(
    config: Config,
    target: DatabaseTarget,
    image: Path | None,
    needs: HostNeeds,
    say: Callable[[str], None],
) -> tuple[Hkd, int, str, DemoDesktop | None]:
    """Register this node, publish the demo image and run the HKD."""
    network = vm_network(config.get("vm.network.ip.start"), config.get("vm.network.netmask"))
    address = str(network.network_address + 1)
    engine = make_engine(target)
    desktop: DemoDesktop | None = None
    try:
        host_id, created = register_node(engine, config.get("nodename"), address)
        say(f"node {config.get('nodename')!r}: host {host_id} at {address}"
            + (" (registered now)" if created else ""))  # fmt: skip
        if image is not None:
            demo = import_demo_image(
                engine, image, config.get_path("path.storage.images"),
                max(config.get_int("osf.default.memory"), needs.demo_memory_mb),
            )  # fmt: skip
            say(f"demo OSF {demo.osf_id}: disk image {demo.di_id} published as 'default'")
            desktop = ensure_demo_desktop(
                engine, demo.osf_id, config.get_path("path.data") / "demo-user.password",
                ip_start=config.get("vm.network.ip.start"),
                netmask=config.get("vm.network.netmask"),
            )  # fmt: skip
    finally:
        engine.dispose()
    hkd = start_hkd(config, target)
    say(f"node daemon running; VM bridge {config.get('vm.network.bridge')} on {network}")
    return hkd, host_id, address, desktop


def boot_demo_desktop(
    target: DatabaseTarget,
    vm_id: int,
    host_id: int,
    say: Callable[[str], None],
    stop: threading.Event,
    *,
    accel: str,
    budget: float,
    every: float = 15.0,
) -> bool:
    """Ask this node to boot VM ``vm_id`` now and wait until its VMA answers (the VM
    ``running``), saying how it goes every ``every`` seconds. False (said, not raised:
    the node stays up) when it fails, is blocked or does not run within ``budget``
    seconds, or when ``stop`` is set."""
    engine = make_engine(target)
    try:
        asked = start_desktop(engine, vm_id, host_id)
        slow = " (TCG: software emulation, no hardware virtualisation here; a slower boot)"
        note = (slow if accel == "tcg" else "") + ("" if asked else "; already on its way")
        say(f"booting the demo desktop, VM {vm_id}, with accel={accel}{note}")
        began = time.monotonic()
        next_note = began + every
        while not stop.is_set():
            state = desktop_state(engine, vm_id)
            elapsed = time.monotonic() - began
            if state.vm_state == "running":
                say(f"  the demo desktop is running ({elapsed:.0f} s to boot)")
                return True
            failed = state.blocked or (state.vm_state == "stopped" and state.vm_cmd is None)
            if failed or elapsed > budget:
                why = state.last_error or (
                    "blocked" if state.blocked else f"not running after {elapsed:.0f} s"
                )
                say(f"  the demo desktop did not boot: {why}; the node stays up (see its log)")
                return False
            if time.monotonic() >= next_note:
                say(f"  still booting: {elapsed:.0f} s, {state.vm_state}")
                next_note += every
            stop.wait(0.5)
        return False
    finally:
        engine.dispose()


def _boot_if_slow(report: UpReport, say: Callable[[str], None], stop: threading.Event) -> None:
    """A VM boots slowly: boot the demo desktop before the node says it is up."""
    if report.needs is None or not report.needs.boots_slowly:
        return
    if report.desktop is None or report.hkd is None or report.host_id is None:
        return
    if report.target is None:
        return
    boot_demo_desktop(
        report.target, report.desktop.vm_id, report.host_id, say, stop,
        accel=report.hkd.backend.facts().get("accel", "?"),
        # as long as a client's connect would wait for it
        budget=report.hkd.config.get_float("internal.l7r.timeout.vm_start"),
    )  # fmt: skip


def _summary(report: UpReport, out: TextIO, log_file: Path | None) -> None:
    print("", file=out)
    print("QVD node is up.", file=out)
    print(f"  database: {report.database} (schema {report.schema})", file=out)
    if report.cluster is not None:
        c = report.cluster
        print(f"  psql:     psql -h {c.socket_dir} -p {c.port} -U {c.role} {c.dbname}", file=out)
        print(f"  TCP:      127.0.0.1:{c.port}, password in {c.password_file}", file=out)
    if report.demo_image is not None:
        print(f"  demo disk image: {report.demo_image}", file=out)
    if report.hkd is not None:
        settings = report.hkd.settings
        print(f"  node:     {settings.nodename} at {report.host_address}, VMs on bridge "
              f"{settings.bridge} ({settings.hypervisor})", file=out)  # fmt: skip
        for line in how_to_enable(EgressSettings.from_config(report.hkd.config)):
            print(line, file=out)
    if report.superadmin_password is not None:
        print("  superadmin (tenant '*') password, shown this once:", file=out)
        print(f"    {report.superadmin_password}", file=out)
        print("  (forgot it? `qvd db admin-password superadmin` makes a new one)", file=out)
    if report.hkd is not None and report.hkd.services:
        port = getattr(report.hkd.services[0], "port", None)
        print(f"  L7R:      TLS on port {port} (QVD clients connect here)", file=out)
        for attached in getattr(report.hkd.services[0], "attached", ()):
            if isinstance(attached, PortalServer):
                print(f"  Portal:   {attached.url} (desktops in the browser)", file=out)
        if report.desktop is not None:
            d = report.desktop
            print("  your desktop (run it as root on this machine, with a display):", file=out)
            client = Path(sys.executable).with_name("qvd-client")
            command = (
                f"{client if client.exists() else 'qvd-client'} --host 127.0.0.1 --port {port} "
                f"--user {d.user} --password-file {d.password_file} --vm {d.vm_id} --insecure"
            )
            print(f"    {command}", file=out)
    if report.api is not None:
        for line in login_instructions(report.api.endpoint):
            print(line, file=out)
    if log_file is not None:
        print(f"  logs:     {log_file}", file=out)
    if systemd_is_running():
        print("  services: `qvd node units --install` runs this node under systemd instead",
              file=out)  # fmt: skip
    print("Stop with Ctrl-C (SIGINT) or SIGTERM.", file=out, flush=True)


def node_defaults(config: Config) -> Config:
    """What an all-in-one node assumes unless its file says otherwise: its name is the
    machine's, and stopping it stops its VMs (its database stops with it)."""
    extra: dict[str, str] = {}
    if config.raw("nodename") is None:
        extra["nodename"] = socket.gethostname()
    setting = config.setting("internal.hkd.stopping.vms")
    if setting is None or setting.source == "built-in default":
        extra["internal.hkd.stopping.vms"] = "1"
    return config.with_overrides(extra, source="qvd up") if extra else config


def run_up(config: Config, out: TextIO, stop_event: threading.Event | None = None) -> None:
    """Bring the node up, print the summary, wait for a signal, stop cleanly."""
    config = node_defaults(config)
    log_file = configure_logging(config, to_file=True)
    stop = stop_event or threading.Event()
    lock = PidLock(config.get_path("path.run") / "qvd-up.lock")
    try:
        lock.acquire()
    except LockHeld as held:
        raise NodeAlreadyRunning(
            f"another `qvd up` (pid {held.holder}) is running this node ({held.path})"
        ) from None

    notifier = notifier_from_env()
    report: UpReport | None = None
    with stop_on_signals(stop):
        try:

            def say(line: str) -> None:
                print(line, file=out, flush=True)

            report = bring_up(config, say)
            _boot_if_slow(report, say, stop)
            _summary(report, out, log_file)
            notifier.ready("QVD node is up")
            while not stop.wait(1.0):
                pass
            notifier.stopping()
            print("stopping…", file=out, flush=True)
        finally:
            if report is not None and report.api is not None:
                report.api.stop()
                print("admin API stopped", file=out, flush=True)
            if report is not None and report.hkd is not None:
                report.hkd.stop()
                if report.hkd.network is not None:
                    report.hkd.network.remove(guard=True)
                print("node daemon stopped", file=out, flush=True)
            if report is not None and report.cluster is not None:
                report.cluster.stop()
                print("embedded PostgreSQL stopped", file=out, flush=True)
            lock.release()
