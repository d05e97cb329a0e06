"""One reconcile step per VM: compare what the database wants with what runs, and move
the VM one step along ``stopped → starting → running → stopping → stopped`` (plus
``zombie`` and ``debugging``).

Level-triggered and idempotent: each call re-reads the row and asks the backend what
runs; running it twice changes nothing more. Deadlines come from ``vm_state_ts`` and
the database's clock, so a restarted HKD carries on where the last one stopped. Waits
return a requeue delay (a worker never sleeps); backend errors raise, and the caller
retries them with backoff; errors no retry can fix put the VM back to ``stopped``
with the reason in ``vm_runtimes.last_error``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from qvd.config import Config
from qvd.config.names import PATH_COMPONENT, NameRuleError, is_safe_config_value, shown
from qvd.db.vmasecret import derive_vma_secret, master_secret
from qvd.hkd import store
from qvd.hkd.addressing import host_device, mac_for, prefix_length
from qvd.hkd.backends import Backend, HomeSpec, NetworkSpec, TerminalBackendError, VmSpec
from qvd.hkd.egress import EGRESS_PROPERTY, Egress
from qvd.hkd.health import Liveness, VmaProbe
from qvd.hkd.liveconfig import StartSettings
from qvd.hkd.metrics import HkdMetrics
from qvd.hkd.ports import Port, PortFilter, PortFilterError
from qvd.hkd.settings import HkdSettings
from qvd.hkd.store import HostRow, VmView

__all__ = ["Outcome", "Reconciler", "stored_name_problem"]

log = logging.getLogger("qvd.hkd.reconcile")

# VMA readiness polling right after start: tight at first, then slower.
_FAST_POLL = 0.02
_FAST_POLL_WINDOW = 3.0
_SLOW_POLL = 0.25
_STOP_POLL = 0.05
_SOFT_EXPIRY_REPEAT = 3600.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the caller should do next with this VM: reconcile again after
    ``requeue_after`` seconds, or only on the next event or resync (None)."""

    requeue_after: float | None = None
    state: str | None = None


@dataclass(slots=True)
class _Local:
    """What the HKD remembers of a VM between steps (lost on restart, by design only
    used for pacing, never for correctness)."""

    next_ping: float = 0.0
    vma_last_ok: float | None = None
    stop_sent: bool = False
    killed: bool = False
    soft_expiry_signalled: float | None = None


class Reconciler:
    """Reconciles the VMs of one host against one backend."""

    def __init__(
        self,
        engine: Engine,
        backend: Backend,
        host: HostRow,
        settings: HkdSettings,
        vma: VmaProbe,
        *,
        clock: Callable[[], float] = time.monotonic,
        ports: PortFilter | None = None,
        egress: Egress | None = None,
        fenced: Callable[[], bool] = lambda: False,
        before_start: Callable[[VmSpec], None] = lambda spec: None,
        dns_servers: tuple[str, ...] = (),
        live: Callable[[], Config] | None = None,
        metrics: HkdMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.host = host
        self.settings = settings
        self.vma = vma
        self.clock = clock
        self.ports = ports  # anti-spoofing of the VMs' bridge ports (None: not managed)
        self.egress = egress  # desktops that may go out (None: the node has no egress)
        self.fenced = fenced  # a fenced node starts nothing (see qvd.hkd.fencing)
        self.before_start = before_start  # e.g. its DHCP lease served (qvd.hkd.dhcp)
        self.dns_servers = dns_servers  # the node's DNS for VMs that may go out (dnsmasq)
        self.metrics = metrics or HkdMetrics()  # qvd.hkd.metrics: this node's /metrics
        self._local: dict[int, _Local] = {}
        self._heavy = threading.BoundedSemaphore(max(1, settings.max_heavy))
        self._prefix = prefix_length(settings.netmask)
        self._master: bytes | None = None
        # the live configuration (the database's rows); None: the node's settings only
        self.live = live

    @property
    def start_patience(self) -> float:
        """Seconds a start may take until the VMA answers: the node's setting, or the
        backend's own boot time when it is longer (a virtual machine boots a kernel)."""
        return max(self.backend.capabilities.start_timeout, self.settings.vma_max_fail_starting)

    def vma_secret(self, view: VmView) -> str:
        """The secret of this run of the VM (see ``qvd.db.vmasecret``)."""
        if self._master is None:
            with self.engine.begin() as conn:
                self._master = master_secret(conn)
        return derive_vma_secret(self._master, view.vm_id, view.run_attempts)

    # ---- entry point --------------------------------------------------------------------
    def reconcile(self, vm_id: int) -> Outcome:
        outcome = self._reconcile(vm_id)
        self.metrics.vm_state(vm_id, outcome.state)
        return outcome

    def _reconcile(self, vm_id: int) -> Outcome:
        with self.engine.begin() as conn:
            view = store.load_vm(conn, vm_id)
            if view is not None and view.host_id == self.host.id and view.vm_cmd == "stop":
                claimed = store.claim_stop(conn, vm_id, self.host.id)
                self.metrics.claimed("stop", vm_id, claimed, view.vm_state)
                if claimed:
                    view = store.load_vm(conn, vm_id)
            elif (
                view is not None
                and view.host_id == self.host.id
                and view.vm_cmd == "start"
                and view.vm_state == "stopped"
            ):
                claimed = store.claim_start(conn, vm_id, self.host.id)
                self.metrics.claimed("start", vm_id, claimed, view.vm_state)
                if claimed:
                    view = store.load_vm(conn, vm_id)
        if view is None or view.host_id != self.host.id:
            return self._not_ours(vm_id)
        step = {
            "stopped": self._stopped,
            "starting": self._starting,
            "running": self._running,
            "debugging": self._running,
            "stopping": self._stopping,
            "zombie": self._zombie,
        }[view.vm_state]
        return step(view)

    def forget(self, vm_id: int) -> None:
        self._local.pop(vm_id, None)

    def _local_of(self, vm_id: int) -> _Local:
        return self._local.setdefault(vm_id, _Local())

    # ---- states -------------------------------------------------------------------------
    def _not_ours(self, vm_id: int) -> Outcome:
        """Not assigned here (deleted, released, or a peer marked us lost): make sure
        nothing of it runs or stays on this node."""
        if self.backend.is_alive(vm_id):
            log.warning("VM %s runs here but is not assigned to this node: killing it", vm_id)
            self.backend.kill(vm_id)
            return Outcome(_STOP_POLL)
        if vm_id in self.backend.list_leftovers():
            self.backend.cleanup(vm_id)
        self._release_port(vm_id)
        self.forget(vm_id)
        return Outcome(None)

    def _stopped(self, view: VmView) -> Outcome:
        # assigned here but stopped (a start not yet asked for, or not claimable)
        if self.backend.is_alive(view.vm_id):
            self.backend.kill(view.vm_id)
            return Outcome(_STOP_POLL, "stopped")
        if view.vm_id in self.backend.list_leftovers():
            self.backend.cleanup(view.vm_id)
        self._release_port(view.vm_id)
        self.forget(view.vm_id)
        return Outcome(None, "stopped")

    def _starting(self, view: VmView) -> Outcome:
        local = self._local_of(view.vm_id)
        alive = self.backend.is_alive(view.vm_id)
        if not alive:
            if self.fenced():
                return Outcome(_SLOW_POLL, "starting")
            spec = self._spec_for_start(view)
            if spec is None:  # refused, and released with the reason
                return Outcome(None, "stopped")
            try:
                self._admit_port(spec)  # before the port exists: never unfiltered
                self.before_start(spec)
                with self._heavy, self.metrics.backend_start.time():
                    self.backend.prepare(spec)
                    pid = self.backend.start(spec)
                self._admit_port(spec)  # again, now that its device exists (IPv6 off)
            except TerminalBackendError as exc:
                return self._fail_start(view, f"cannot start: {exc}")
            except PortFilterError as exc:
                return self._fail_start(view, f"cannot filter its network port: {exc}")
            if self.fenced():  # the fence fell during the start: it must not survive it
                self.backend.kill(view.vm_id)
                return Outcome(_SLOW_POLL, "starting")
            with self.engine.begin() as conn:
                store.set_vm_state(conn, view.vm_id, self.host.id, "starting", pid=pid)
            local.next_ping = 0.0
        liveness = self.vma.ping(view.ip or "", self.settings.vma_port, self.vma_secret(view))
        if liveness is Liveness.ANSWERED:
            with self.engine.begin() as conn:
                store.mark_running(conn, view.vm_id, self.host.id)
            self.metrics.vm_running(view.vm_id)
            local.next_ping = self.clock() + self.settings.vma_ok_delay
            local.vma_last_ok = self.clock()
            log.info("VM %s is running (VMA answered)", view.vm_id)
            return Outcome(self.settings.vma_ok_delay, "running")
        waited = view.seconds_in_state()
        if waited > self.start_patience:
            reason = f"its VMA did not answer within {self.start_patience:g} s"
            if self.settings.debug_keep_dead_vma:
                with self.engine.begin() as conn:
                    store.set_vm_state(conn, view.vm_id, self.host.id, "debugging", error=reason)
                return Outcome(self.settings.vma_error_delay, "debugging")
            return self._to_stopping(view, reason)
        return Outcome(_FAST_POLL if waited < _FAST_POLL_WINDOW else _SLOW_POLL, "starting")

    def _running(self, view: VmView) -> Outcome:
        local = self._local_of(view.vm_id)
        if not self.backend.is_alive(view.vm_id):
            return self._to_stopping(view, "the VM exited on its own")
        if view.expiration_hard is not None and view.expiration_hard <= view.db_now:
            return self._to_stopping(view, "hard expiration reached")
        now = self.clock()
        if view.expiration_soft is not None and view.expiration_soft <= view.db_now:
            last = local.soft_expiry_signalled
            if last is None or now - last >= _SOFT_EXPIRY_REPEAT:
                hard = view.expiration_hard.isoformat() if view.expiration_hard else ""
                self.vma.expire(
                    view.ip or "",
                    self.settings.vma_port,
                    self.vma_secret(view),
                    soft=view.expiration_soft.isoformat(),
                    hard=hard,
                )
                local.soft_expiry_signalled = now
        if now < local.next_ping:
            return Outcome(local.next_ping - now, view.vm_state)
        liveness = self.vma.ping(view.ip or "", self.settings.vma_port, self.vma_secret(view))
        if liveness is Liveness.ANSWERED:
            if view.vm_state == "debugging":
                with self.engine.begin() as conn:
                    store.set_vm_state(conn, view.vm_id, self.host.id, "running")
            local.vma_last_ok = self.clock()
            local.next_ping = local.vma_last_ok + self.settings.vma_ok_delay
            return Outcome(self.settings.vma_ok_delay, "running")
        if local.vma_last_ok is None:  # adopted after a restart: count from now
            local.vma_last_ok = now
        quiet = self.clock() - local.vma_last_ok
        # a refused agent is dead; a silent one (timeouts) is hung, or its VM starved
        # of CPU: each has its own patience
        if liveness is Liveness.DEAD:
            limit, how = self.settings.vma_max_fail_running, "connection refused"
        else:
            limit, how = self.settings.vma_max_silent_running, "timeouts"
        if quiet >= limit and view.vm_state == "running":
            return self._to_stopping(view, f"its VMA stopped answering ({how}) for {limit:g} s")
        local.next_ping = self.clock() + self.settings.vma_error_delay
        return Outcome(self.settings.vma_error_delay, view.vm_state)

    def _stopping(self, view: VmView) -> Outcome:
        self.metrics.stop_began(view.vm_id)
        local = self._local_of(view.vm_id)
        if self.backend.is_alive(view.vm_id):
            elapsed = view.seconds_in_state()
            if not local.stop_sent:
                if self.backend.capabilities.needs_vma_poweroff and view.ip:
                    self.vma.poweroff(view.ip, self.settings.vma_port, self.vma_secret(view))
                self.backend.stop(view.vm_id)
                local.stop_sent = True
            elif elapsed >= self.settings.shutdown_timeout and not local.killed:
                log.warning("VM %s ignored the stop for %.0f s: killing it", view.vm_id, elapsed)
                self.backend.kill(view.vm_id)
                local.killed = True
            elif elapsed >= self.settings.shutdown_timeout + self.settings.stop_timeout:
                with self.engine.begin() as conn:
                    store.set_vm_state(
                        conn,
                        view.vm_id,
                        self.host.id,
                        "zombie",
                        error="the VM survived SIGKILL; retrying",
                    )
                return Outcome(self.settings.stop_timeout, "zombie")
            return Outcome(_STOP_POLL, "stopping")
        log.info("VM %s is stopped", view.vm_id)
        return self._release(view)

    def _zombie(self, view: VmView) -> Outcome:
        if self.backend.is_alive(view.vm_id):
            self.backend.kill(view.vm_id)
            return Outcome(self.settings.stop_timeout, "zombie")
        return self._release(view)

    # ---- helpers ------------------------------------------------------------------------
    def _to_stopping(self, view: VmView, reason: str) -> Outcome:
        log.warning("VM %s: %s; stopping it", view.vm_id, reason)
        with self.engine.begin() as conn:
            store.set_vm_state(conn, view.vm_id, self.host.id, "stopping", error=reason)
        local = self._local_of(view.vm_id)
        local.stop_sent = False
        local.killed = False
        return Outcome(0, "stopping")

    def _fail_start(self, view: VmView, reason: str) -> Outcome:
        """A start that cannot succeed: leave nothing behind, back to stopped."""
        log.error("VM %s: %s", view.vm_id, reason)
        if self.backend.is_alive(view.vm_id):
            self.backend.kill(view.vm_id)
        return self._release(view, error=reason)

    def _release(self, view: VmView, *, error: str | None = None) -> Outcome:
        """Nothing of the VM runs: clean up after it and give it back as ``stopped``."""
        self.backend.cleanup(view.vm_id)
        self._release_port(view.vm_id)
        with self.engine.begin() as conn:
            store.clear_runtime(conn, view.vm_id, self.host.id, error=error)
        self.metrics.vm_released(view.vm_id)
        self.forget(view.vm_id)
        return Outcome(None, "stopped")

    def _admit_port(self, spec: VmSpec) -> None:
        net = spec.network
        if self.ports is not None:
            self.ports.admit(Port(net.host_device, net.mac, net.address))
        if self.egress is not None:  # its address may go out exactly when it has a gateway
            self.egress.admit(net.host_device, net.address, out=net.gateway is not None)

    def _release_port(self, vm_id: int) -> None:
        """Called once nothing of the VM runs: its port may no longer speak."""
        device = host_device(self.settings.device_prefix, vm_id)
        if self.egress is not None:
            self.egress.release(device)
        if self.ports is not None:
            self.ports.release(device)

    def _spec_for_start(self, view: VmView) -> VmSpec | None:
        """Resolve the DI and address, save them with a fresh VMA secret, build the spec.
        None when the VM cannot start (the reason is recorded)."""
        with self.engine.begin() as conn:
            di = (
                store.load_di(conn, view.current_di_id)
                if view.current_di_id is not None
                else store.resolve_di(conn, view.osf_id, view.di_tag)
            )
        if di is None:
            self._fail_start(
                view,
                f"no published, unblocked disk image of OSF {view.osf_id} has tag {view.di_tag!r}",
            )
            return None
        if not view.ip:
            self._fail_start(view, "the VM has no IP address (vms.ip is empty)")
            return None
        if (refused := stored_name_problem(view, di.path)) is not None:
            self._fail_start(view, refused)
            return None
        if view.current_di_id is None:
            with self.engine.begin() as conn:
                store.save_start_details(
                    conn,
                    view.vm_id,
                    self.host.id,
                    address=view.ip,
                    vma_port=self.settings.vma_port,
                    x_port=self.settings.x_port,
                    ssh_port=self.settings.ssh_port,
                    di_id=di.id,
                    osf_id=view.osf_id,
                )
        home = None
        if view.user_storage_mb:  # how and where it is kept is the backend's business
            home = HomeSpec(login=view.login, size_mib=view.user_storage_mb)
        gateway = self._gateway_for(view)
        start = self._start_settings(view)
        return VmSpec(
            vm_id=view.vm_id,
            name=view.name,
            di_id=di.id,
            image=self.settings.images_dir / di.path,
            memory_mib=view.memory_mb,
            vcpus=start.vcpus,
            cpu_weight=start.cpu_weight,
            network=NetworkSpec(
                bridge=self.settings.bridge,
                address=view.ip,
                prefix=self._prefix,
                mac=mac_for(view.ip, self.settings.mac_prefix),
                host_device=host_device(self.settings.device_prefix, view.vm_id),
                gateway=gateway,
                dns=self.dns_servers if gateway is not None else (),
            ),
            vma_secret=self.vma_secret(view),
            home=home,
            overlay_persistent=start.overlay_persistent,
        )

    def _start_settings(self, view: VmView) -> StartSettings:
        """vm.cpus, vm.cpu.weight, vm.overlay.persistent as they are now for the VM's
        tenant (qvd.hkd.liveconfig); the node's own when there is no live config."""
        node = StartSettings.of_node(self.settings)
        if self.live is None:
            return node
        return StartSettings.resolve(self.live(), view.tenant_id, node)

    def _gateway_for(self, view: VmView) -> str | None:
        """The default route given to the VM (egress); None: no route out."""
        if self.egress is None:  # the node has no egress: nobody goes out
            return None
        with self.engine.begin() as conn:
            facts = store.egress_facts(conn, view.vm_id, EGRESS_PROPERTY)
        if facts is None:
            return None
        gateway, decision = self.egress.gateway_for(facts.tenant_id, facts.osf_choices)
        how = "may go out" if gateway is not None else "stays in"
        log.info("VM %s %s (%s)", view.vm_id, how, decision.because)
        return gateway


def stored_name_problem(view: VmView, di_path: str) -> str | None:
    """Why a name stored before the name rules (qvd.config.names) cannot meet the
    backend's configuration file or paths, or None: the VM name goes on one line of a
    configuration file and the DI file name is one path component under the images
    directory. (How a home is named is the backend's: it refuses a login it cannot
    store with a :class:`TerminalBackendError`.)"""
    if not is_safe_config_value(view.name):
        return (
            f"the VM name {shown(view.name)} cannot be written into a configuration file "
            "(line break, control or invisible character): rename the VM"
        )
    try:
        PATH_COMPONENT.check(di_path)
    except NameRuleError as exc:
        return f"refused: {exc}"
    return None
