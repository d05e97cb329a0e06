"""The HKD process: registration, single-instance lock, adoption, and the threads that
feed the reconcile loop (NOTIFY listener, resync), write heartbeats, watch peers, and
fence the node (``fencing``: its own timer thread; ``watchdog``: a process that fences
even when this one is dead).

Threads, not an event loop: workers block on backend commands and HTTP calls, and
the work queue (``workqueue``) guarantees one reconcile in flight per VM.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from qvd.config import Config, ConfigError, ConfigValueError
from qvd.db import (
    CommitOutcomeUnknown,
    ConnectionLimits,
    DatabaseError,
    DatabaseTarget,
    Listener,
    database_target,
    limited_target,
    make_engine,
    require_current_schema,
    run_transaction,
)
from qvd.db.channels import host_cmd_channel, vm_cmd_channel
from qvd.db.dbconfig import LiveConfig
from qvd.hkd import store
from qvd.hkd.addressing import vm_network
from qvd.hkd.backends import Backend, BackendError, UnknownBackend, load_backend
from qvd.hkd.dhcp import DhcpSettings
from qvd.hkd.dnsmasq import DhcpError
from qvd.hkd.egress import Egress, EgressError, EgressFilter, EgressSettings
from qvd.hkd.fencing import FenceClock, Fencer, Outage, kill_all, probe_database
from qvd.hkd.gc import gc_loop
from qvd.hkd.health import HttpVmaProbe, VmaProbe
from qvd.hkd.lease import Lease, LeaseFile, boot_clock
from qvd.hkd.liveconfig import ConfigWatch, startup_config
from qvd.hkd.load import CpuSampler
from qvd.hkd.metrics import HkdMetrics
from qvd.hkd.network import NetworkError, NodeNetwork
from qvd.hkd.nodedhcp import NodeDhcp
from qvd.hkd.pidlock import LockHeld, PidLock
from qvd.hkd.ports import PortFilter
from qvd.hkd.reconcile import Reconciler
from qvd.hkd.settings import HkdSettings
from qvd.hkd.watchdog import WatchdogHandle
from qvd.hkd.workqueue import WorkQueue
from qvd.policy.runner import PolicyRunner

__all__ = ["Hkd", "HkdStartError", "HostedService", "ServiceFactory", "backend_facts_line"]

log = logging.getLogger("qvd.hkd")

_MAX_RETRIES_WHILE_STARTING = 5
_TRANSIENT = (
    DBAPIError,
    OperationalError,
    psycopg.Error,
    DatabaseError,
    BackendError,
    NetworkError,
    OSError,
)


def backend_facts_line(backend: Backend) -> str:
    """One log line of what the backend chose, e.g. ``backend=lxc homes=per-vm``."""
    words = [f"backend={backend.name}"]
    caps = backend.capabilities
    words.append(f"start_timeout={caps.start_timeout:g}")
    words += [f"{name}={value}" for name, value in sorted(backend.facts().items())]
    return " ".join(words)


class HkdStartError(Exception):
    """The HKD cannot start; the message says why and what to do."""


class HostedService(Protocol):
    """Something the HKD runs while the node is up (the L7R listener)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


# Made once the node knows its hosts row; the HKD itself imports no other daemon.
ServiceFactory = Callable[[store.HostRow], HostedService]


class Hkd:
    """One node's daemon. ``start()`` returns once the node is ``running``;
    ``stop()`` shuts it down; ``wait()`` blocks until it has stopped."""

    def __init__(
        self,
        config: Config,
        *,
        backend: Backend | None = None,
        vma: VmaProbe | None = None,
        target: DatabaseTarget | None = None,
        services: Sequence[ServiceFactory] = (),
        metrics: HkdMetrics | None = None,
    ) -> None:
        self.target = target or database_target(config)
        # restart-only tokens of the database's rows are read here (qvd.hkd.liveconfig)
        config = startup_config(config, self.target, _TRANSIENT)
        self.config = config
        self.metrics = metrics or HkdMetrics()  # served by the node's /metrics (qvd.node)
        self._service_factories = list(services)
        self.services: list[HostedService] = []
        self.settings = HkdSettings.from_config(config)
        s = self.settings
        # every connection: keepalives, a TCP user timeout and a statement timeout, so
        # that no call waits forever on a database it can no longer reach
        general = ConnectionLimits(
            connect_timeout=int(self.target.params.get("connect_timeout", "20")),
            user_timeout=max(10.0, s.node_timeout),
            statement_timeout=max(10.0, s.node_timeout),
        )
        self._listen_target = limited_target(self.target, general)
        self.engine: Engine = make_engine(self.target, limits=general, pool_size=s.workers + 4)
        # the heartbeat path: tight limits, its own connection
        self.heartbeat_engine: Engine = make_engine(
            self.target,
            limits=ConnectionLimits(
                connect_timeout=s.heartbeat_connect_timeout,
                user_timeout=s.heartbeat_call_timeout,
                statement_timeout=s.heartbeat_call_timeout,
            ),
            pool_size=1,
            max_overflow=1,
        )
        self.lease = LeaseFile(s.lease_path)
        previous = self.lease.read()
        # a restarted HKD inherits no more right to run VMs than its predecessor had
        anchor = (
            previous.deadline - s.ticker_timeout
            if previous is not None and not previous.released
            else boot_clock() - s.ticker_timeout
        )
        self.fence_clock = FenceClock(s.ticker_timeout, anchor)
        self.fencer = Fencer(self.fence_clock, self._kill_all, on_tick=self._watch_watchdog)
        self.metrics.watch_fencing(lambda: (self.fencer.fence_count, self.fencer.fenced))
        self.watchdog: WatchdogHandle | None = WatchdogHandle(s, config) if s.watchdog else None
        self._next_watchdog_check = 0.0
        self._backend = backend
        self._vma = vma
        self.queue: WorkQueue[int] = WorkQueue(base_delay=0.05, max_delay=60.0)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = PidLock(self.settings.lock_path)
        self.host: store.HostRow | None = None
        self.reconciler: Reconciler | None = None
        self.network: NodeNetwork | None = None
        self.dhcp: NodeDhcp | None = None  # the node's DHCP server (vm.network.use_dhcp)
        self.live = LiveConfig(self.config, self.engine)  # the rows, followed by config_watch
        self.config_watch: ConfigWatch | None = None
        self.policies: PolicyRunner | None = None  # the policy leader election (qvd.policy)

    @property
    def fenced(self) -> bool:
        """Whether this node has fenced itself (its VMs killed, no start allowed)."""
        return self.fencer.fenced

    # ---- start ----------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.engine.dispose()
            self.heartbeat_engine.dispose()
            raise

    def _start(self) -> None:
        try:
            require_current_schema(self.engine, "qvd hkd")
        except DatabaseError as exc:
            raise HkdStartError(str(exc)) from None
        with self.engine.begin() as conn:
            host = store.find_host(conn, self.settings.nodename)
        if host is None:
            raise HkdStartError(
                f"no host named {self.settings.nodename!r} in the database: register this "
                "node first (its hosts.name must equal nodename in node.conf)"
            )
        self.host = host
        try:
            self._lock.acquire()
        except LockHeld as held:
            raise HkdStartError(
                f"another HKD (pid {held.holder}) holds {held.path}: one HKD per node"
            ) from None
        try:
            ports: PortFilter | None = None
            egress: Egress | None = None
            if self.settings.manage_bridge:
                self.network = self._node_network(host)
                try:
                    self.network.ensure()
                except NetworkError as exc:
                    raise HkdStartError(str(exc)) from None
                ports = PortFilter(self.network.table) if self.network.firewall else None
                if self.network.egress is not None:  # desktops may go out (qvd.hkd.egress)
                    allowed = EgressFilter(self.network.table)
                    egress = Egress(self.network.egress, allowed, self.live.get)
                    log.info("desktop egress on: NAT out of %s", self.network.egress.uplink)
                self._start_dhcp(host, self.network, egress)
            elif self._egress_settings().enabled:
                raise HkdStartError(
                    "vm.network.egress.enable needs vm.network.bridge.manage: the node's "
                    "own firewall is what lets desktops out, and only them"
                )
            try:
                backend = self._backend or load_backend(
                    self.settings.hypervisor, config=self.config
                )
            except (UnknownBackend, ConfigError, BackendError) as exc:
                raise HkdStartError(
                    f"the {self.settings.hypervisor} backend cannot start: {exc}"
                ) from None
            self._backend = backend
            log.info("%s", backend_facts_line(backend))
            vma = self._vma or HttpVmaProbe(self.settings.bridge, self.settings.rpc_timeout)
            self.reconciler = Reconciler(
                self.engine,
                backend,
                host,
                self.settings,
                vma,
                ports=ports,
                egress=egress,
                fenced=lambda: self.fenced,
                before_start=self.dhcp.before_start if self.dhcp else lambda spec: None,
                dns_servers=self.dhcp.dns_servers if self.dhcp else (),
                live=self.live.get,
                metrics=self.metrics,
            )
            with self.engine.begin() as conn:
                store.set_host_state(conn, host.id, "starting", os.getpid())
                store.set_backend_facts(conn, host.id, {"backend": backend.name, **backend.facts()})
            self._sampler = CpuSampler()
            # prove the heartbeat (renewing the lease) before touching any running VM,
            # and make sure a watchdog guards the lease before adopting them
            self._beat()
            if self.watchdog is not None:
                self.watchdog.ensure()
            self._adopt()
            with self.engine.begin() as conn:
                store.set_host_state(conn, host.id, "running", os.getpid())
        except BaseException:
            self._stop_dhcp()
            self._lock.release()
            raise
        for i in range(max(1, self.settings.workers)):
            self._spawn(f"worker-{i}", self._worker)
        self._spawn("listener", self._listener)
        self._spawn("resync", self._resync)
        self._spawn("ticker", self._ticker)
        self._spawn("cluster", self._cluster_monitor)
        if self.dhcp is not None:
            dhcp, poll = self.dhcp, self.settings.poll_delay
            self._spawn("leases", lambda: dhcp.keep(self._stop, poll, _TRANSIENT))
        self._spawn(
            "gc",
            lambda: gc_loop(self.config, self.engine, backend, host.id, self._stop, self.live.get),
        )
        self.config_watch = ConfigWatch(
            self.live, self.config, target=self._listen_target, engine=self.engine,
            host_id=host.id, poll_delay=self.config.get_float("internal.hkd.config.poll.delay"),
            transient=_TRANSIENT,
        )  # fmt: skip
        watch = self.config_watch
        self._spawn("config", lambda: watch.run(self._stop))
        if self.config.get_bool("policy.enable"):  # the policy leader election (qvd.policy)
            self.policies = PolicyRunner(self.engine, self._listen_target, self.live.get,
                                         stop=self._stop, may_lead=self._may_lead)  # fmt: skip
            self._spawn("policy", self.policies.run)
        self.fencer.start()
        try:
            for make in self._service_factories:
                service = make(host)
                service.start()
                self.services.append(service)
        except BaseException:
            self.halt()
            raise
        log.info("HKD running as host %s (%s)", host.id, host.name)

    def _dhcp_settings(self, host: store.HostRow) -> DhcpSettings:
        s = self.settings
        return DhcpSettings.from_config(
            self.config, server_address=host.address, network=vm_network(s.ip_start, s.netmask)
        )

    def _start_dhcp(self, host: store.HostRow, network: NodeNetwork, egress: Egress | None) -> None:
        """The node's dnsmasq on its bridge, serving the database's leases."""
        if not network.dhcp:
            return
        s = self.settings
        try:
            self.dhcp = NodeDhcp(
                self._dhcp_settings(host),
                self.engine,
                mac_prefix=s.mac_prefix,
                device_prefix=s.device_prefix,
                egress=egress,
            )
            self.dhcp.start()
        except DhcpError as exc:
            raise HkdStartError(str(exc)) from None

    def _stop_dhcp(self) -> None:
        if self.dhcp is not None:
            self.dhcp.stop()

    def _egress_settings(self) -> EgressSettings:
        try:
            return EgressSettings.from_config(self.config)
        except EgressError as exc:
            raise HkdStartError(str(exc)) from None

    def _node_network(self, host: store.HostRow) -> NodeNetwork:
        s = self.settings
        try:
            network = vm_network(s.ip_start, s.netmask)
            dhcp = self._dhcp_settings(host)
            node = NodeNetwork(
                bridge=s.bridge,
                host_address=host.address,
                network=network,
                ip_start=ipaddress.IPv4Address(s.ip_start),
                vma_port=s.vma_port,
                x_port=s.x_port,
                firewall=s.firewall,
                egress=self._egress_settings().node_rules(
                    bridge=s.bridge, network=network, node_address=host.address
                ),
                dhcp=dhcp.enabled,
                dns=dhcp.enabled and dhcp.dns,
            )
            node.check()
        except (ValueError, ConfigValueError, NetworkError, EgressError) as exc:
            raise HkdStartError(str(exc)) from None
        return node

    def _may_lead(self) -> bool:
        """Whether this node may lead the policies now (a fenced node may not)."""
        return not self.fenced

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"hkd-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def backend(self) -> Backend:
        assert self._backend is not None
        return self._backend

    def _known_vm_ids(self) -> set[int]:
        """VMs assigned here, and every VM the backend has anything of (running or not)."""
        assert self.host is not None
        with self.engine.begin() as conn:
            ids = store.vm_ids_on_host(conn, self.host.id)
        return ids | self.backend.list_leftovers()

    def _adopt(self) -> None:
        """Before any worker runs: one reconcile of every VM assigned here and of
        everything the backend has, so running VMs are adopted and leftovers cleaned."""
        assert self.reconciler is not None
        for vm_id in sorted(self._known_vm_ids()):
            try:
                outcome = self.reconciler.reconcile(vm_id)
            except _TRANSIENT as exc:
                log.warning("adopting VM %s failed (%s); will retry", vm_id, exc)
                self.queue.add_rate_limited(vm_id)
                continue
            if outcome.requeue_after is not None:
                self.queue.add_after(vm_id, outcome.requeue_after)

    # ---- threads ----------------------------------------------------------------------------
    def _worker(self) -> None:
        assert self.reconciler is not None
        while not self._stop.is_set():
            vm_id = self.queue.get(timeout=0.5)
            if vm_id is None:
                continue
            try:
                outcome = self.reconciler.reconcile(vm_id)
            except _TRANSIENT as exc:
                delay = self.queue.add_rate_limited(vm_id)
                log.warning("VM %s: %s (retry in %.2f s)", vm_id, exc, delay)
                if self.queue.failures(vm_id) >= _MAX_RETRIES_WHILE_STARTING:
                    self._give_up_if_starting(vm_id, str(exc))
            except Exception:
                log.exception("VM %s: unexpected error", vm_id)
                self.queue.add_rate_limited(vm_id)
            else:
                self.queue.forget(vm_id)
                if outcome.requeue_after is not None:
                    self.queue.add_after(vm_id, outcome.requeue_after)
            finally:
                self.queue.done(vm_id)

    def _give_up_if_starting(self, vm_id: int, reason: str) -> None:
        assert self.host is not None
        try:
            with self.engine.begin() as conn:
                view = store.load_vm(conn, vm_id)
                if view is not None and view.vm_state == "starting":
                    store.set_vm_state(
                        conn,
                        vm_id,
                        self.host.id,
                        "stopping",
                        error=f"start failed {self.queue.failures(vm_id)} times: {reason}",
                    )
        except _TRANSIENT:
            pass

    def _listener(self) -> None:
        assert self.host is not None
        channels = [vm_cmd_channel(self.host.id), host_cmd_channel(self.host.id)]
        if self.dhcp is not None:  # a VM row added, changed (its address) or deleted
            channels += NodeDhcp.CHANNELS
        while not self._stop.is_set():
            try:
                with Listener(self._listen_target, channels) as listener:
                    # whatever was sent while we were not listening (a failover loses it)
                    self._resync_once()
                    self._host_command()
                    while not self._stop.is_set():
                        for note in listener.wait(0.5):
                            if note.channel == channels[1]:
                                self._host_command()
                            elif self.dhcp and note.channel in NodeDhcp.CHANNELS:
                                self.dhcp.changed()
                            elif "vm_id" in note.payload:
                                self.queue.add(int(note.payload["vm_id"]))
            except _TRANSIENT as exc:
                log.warning("listener lost the database (%s); reconnecting", exc)
                self._stop.wait(1.0)

    def _host_command(self) -> None:
        assert self.host is not None
        host_id = self.host.id
        claimed: list[str | None] = []

        def claim(conn: Connection) -> str | None:
            claimed.append(store.claim_host_cmd(conn, host_id))
            return claimed[-1]

        try:
            cmd = run_transaction(self.engine, claim, wait=0, what="host command")
        except CommitOutcomeUnknown:
            # the claim may be made and the command gone: a stop run twice is
            # harmless, a stop lost is not (qvd.db.failover)
            cmd = claimed[-1] if claimed else None
        self.metrics.host_claimed(cmd)
        if cmd == "stop":
            log.info("host command 'stop' received")
            threading.Thread(target=self.stop, name="hkd-stopper", daemon=True).start()

    def _resync_once(self) -> None:
        for vm_id in self._known_vm_ids():
            self.queue.add(vm_id)

    def _resync(self) -> None:
        while not self._stop.wait(self.settings.poll_delay):
            try:
                self._resync_once()
                self._host_command()
            except _TRANSIENT as exc:
                log.warning("resync failed: %s", exc)

    def _beat(self) -> None:
        """Write the heartbeat; on success, renew the fence clock and the lease from
        the moment it was sent (never later than the ``ok_ts`` the database writes)."""
        assert self.host is not None
        figures = self._sampler.sample()
        running = len(self.backend.list_running())
        sent_at = boot_clock()
        with self.heartbeat_engine.begin() as conn:
            store.heartbeat(
                conn,
                self.host.id,
                pid=os.getpid(),
                usable_ram=figures.usable_ram_mb,
                usable_cpu=figures.usable_cpu,
                free_ram_mb=figures.free_ram_mb,
                idle_cpu=figures.idle_cpu,
                running_vms=running,
            )
        self._renew(sent_at)

    def _renew(self, at: float) -> None:
        deadline = self.fence_clock.renew(at)
        try:
            self.lease.write(Lease(deadline=deadline, holder=os.getpid()))
        except OSError as exc:  # the watchdog will fence: loud, but not fatal here
            log.error("cannot write the fencing lease %s: %s", self.lease.path, exc)

    def _ticker(self) -> None:
        while not self._stop.wait(self.settings.ticker_delay):
            try:
                self._tick()
            except Exception:  # never let the heartbeat thread die: the fence would fall
                log.exception("heartbeat failed unexpectedly")

    def _tick(self) -> None:
        """One heartbeat; on failure, find out whether the database is down for
        everyone (then nobody's silence counts: renew) or this node is cut off (then
        the fence clock runs on; the fence timer acts on its own)."""
        try:
            self._beat()
            return
        except _TRANSIENT as exc:
            failure: BaseException = exc
        probed_at = boot_clock()
        outage = probe_database(self.target, self.settings.heartbeat_call_timeout, failure)
        silent = probed_at - (self.fence_clock.deadline - self.settings.ticker_timeout)
        if outage is Outage.DOWN_FOR_EVERYONE:
            self._renew(probed_at)
            log.warning("the database is down for everyone (%s): not fencing", failure)
        else:
            log.warning("heartbeat failed, cut off for %.1f s: %s", silent, failure)

    def _kill_all(self) -> list[int]:
        return kill_all(self.backend)

    def _watch_watchdog(self) -> None:
        """From the fence timer: restart the watchdog if it died (every second)."""
        if self.watchdog is None:
            return
        now = boot_clock()
        if now < self._next_watchdog_check:
            return
        self._next_watchdog_check = now + 1.0
        # a watchdog just started may still be importing before it takes its lock:
        # only one that had its grace and is gone is news
        if not self.watchdog.running() and self.watchdog.ensure():
            log.error("the fencing watchdog was gone: started another")

    def _cluster_monitor(self) -> None:
        assert self.host is not None
        while not self._stop.wait(self.settings.cluster_delay):
            if self.fenced:
                continue
            try:
                with self.engine.begin() as conn:
                    lost = store.mark_lost_peers(conn, self.host.id, self.settings.node_timeout)
                self.metrics.peers_lost(len(lost))
                if lost:
                    log.warning("marked hosts %s lost and released their VMs", lost)
            except _TRANSIENT as exc:
                log.warning("peer check failed: %s", exc)

    # ---- stop ----------------------------------------------------------------------------------
    def stop(self, timeout: float = 60.0) -> None:
        """Shut down: optionally stop this node's VMs, then end the threads."""
        if self._stop.is_set():
            self._stopped.wait(timeout)
            return
        self._stop_services()
        try:
            if self.host is not None:
                with self.engine.begin() as conn:
                    store.set_host_state(conn, self.host.id, "stopping", os.getpid())
                if self.settings.stop_vms_on_exit:
                    self._stop_all_vms(timeout)
        except _TRANSIENT as exc:
            log.warning("while stopping: %s", exc)
        self._stop.set()
        self.fencer.stop()
        self.queue.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self._stop_dhcp()
        try:
            if self.host is not None:
                with self.engine.begin() as conn:
                    store.set_host_state(conn, self.host.id, "stopped", None)
                # peers never release the VMs of a stopped node: the lease may go
                self.lease.write(Lease(deadline=0.0, holder=os.getpid(), released=True))
                if self.watchdog is not None:
                    self.watchdog.wait_gone(timeout=10.0)
        except _TRANSIENT as exc:
            # not recorded: peers may count us lost, so the watchdog must still fence
            log.warning("could not record the stop (the lease stays): %s", exc)
        self._lock.release()
        self.engine.dispose()
        self.heartbeat_engine.dispose()
        self._stopped.set()
        log.info("HKD stopped")

    def _stop_all_vms(self, timeout: float) -> None:
        assert self.host is not None
        with self.engine.begin() as conn:
            ids = store.vm_ids_on_host(conn, self.host.id)
            for vm_id in ids:
                view = store.load_vm(conn, vm_id)
                if view is not None and view.vm_state in ("starting", "running", "debugging"):
                    store.set_vm_state(
                        conn, vm_id, self.host.id, "stopping", error="its node was shut down"
                    )
        for vm_id in ids:
            self.queue.add(vm_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.engine.begin() as conn:
                busy = ids & store.active_vm_ids(conn, self.host.id)
            if not busy:
                return
            time.sleep(0.05)

    def halt(self) -> None:
        """End the threads at once, writing nothing and leaving VMs as they are: what
        the rest of the cluster sees when this process dies."""
        self._stop_services()
        self._stop.set()
        self.fencer.stop()
        self.queue.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self._stop_dhcp()
        self._lock.release()
        self.engine.dispose()
        self.heartbeat_engine.dispose()
        self._stopped.set()

    def _stop_services(self) -> None:
        while self.services:
            service = self.services.pop()
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s failed", type(service).__name__)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)
