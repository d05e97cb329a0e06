"""The HKD's settings, read once from the configuration into one typed value, and the
fencing invariant they must keep.

Fencing invariant: a node that cannot prove its heartbeat stops its own desktops
strictly before any peer may restart them elsewhere. With F = ``ticker.timeout``
(fence), K = ``fence.kill_time`` (killing every VM), J = :func:`fence_jitter` (the
fence timer's period, scheduling, clock rates) and L = ``cluster.node.timeout`` (lost)::

    node    beat sent at t0 (the database writes ok_ts >= t0), then no proof:
            t0 ─────────── F ───────────┤ fence: kill ─ K ─┤ + J: every VM of the node dead
    peers   ok_ts (or the database's start, if later) ─────── L ───────┤ may release
            a node's VMs die before t0 + F + K + J <= ok_ts + F + K + J < ok_ts + L

    F + K + J < L    (refused at start otherwise: :class:`FenceOrderError`)

The node counts from when it *sent* its last heartbeat that succeeded (never later
than the ``ok_ts`` the database wrote), on its own timer thread that never waits for
the database; a watchdog process does the same from a lease file if the HKD is dead.
Peers count a node's silence from the later of its ``ok_ts`` and the database's own
start, so while the database is down for everyone nobody's silence counts; a node
that is *refused* (no server: connection refused, no socket) counts the refusal like
a heartbeat for the same reason (the refusal happened before the next postmaster
start, from which peers count), and only timeouts and unreachable routes ("I am cut
off") let its fence clock run out.

Assumptions: a refusal means no server listens. A firewall that *rejects* (TCP reset,
ICMP port-unreachable) between a node and its database breaks that; filter by
dropping. A failover to a standby whose postmaster started long ago is not a "start"
for this rule: keep the failover shorter than the lost timeout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from qvd.config import Config, ConfigValueError

__all__ = [
    "CPU_WEIGHT_MAX",
    "CPU_WEIGHT_MIN",
    "FenceOrderError",
    "HkdSettings",
    "check_fence_order",
    "fence_jitter",
]

CPU_WEIGHT_MIN, CPU_WEIGHT_MAX = 1, 10000  # cgroup v2 cpu.weight's range
FENCE_TIMER_PERIOD = 0.1  # seconds between two looks of the fence timer at its deadline


class FenceOrderError(ConfigValueError):
    """The fence timeout is not safely below the lost-node timeout."""


def fence_jitter(node_timeout: float) -> float:
    """What the fence may slip by: the timer's period, scheduling (0.25 s) and clock
    rate differences between the node and the database (1 % of the lost timeout)."""
    return FENCE_TIMER_PERIOD + 0.25 + 0.01 * node_timeout


@dataclass(frozen=True, slots=True, kw_only=True)
class HkdSettings:
    nodename: str
    hypervisor: str
    bridge: str
    manage_bridge: bool
    firewall: bool
    ip_start: str
    netmask: str
    mac_prefix: str
    device_prefix: str
    vma_port: int
    x_port: int
    ssh_port: int
    images_dir: Path
    workers: int
    max_heavy: int
    poll_delay: float
    ticker_delay: float
    ticker_timeout: float
    cluster_delay: float
    node_timeout: float
    vma_ok_delay: float
    vma_error_delay: float
    vma_max_fail_running: float
    vma_max_silent_running: float
    vma_max_fail_starting: float
    rpc_timeout: float
    shutdown_timeout: float
    stop_timeout: float
    stop_vms_on_exit: bool
    debug_keep_dead_vma: bool
    overlay_persistent: bool
    vcpus: int
    cpu_weight: int
    lock_path: Path
    fence_kill_time: float
    watchdog: bool
    lease_path: Path
    watchdog_lock_path: Path

    def __post_init__(self) -> None:
        check_fence_order(self.ticker_timeout, self.fence_kill_time, self.node_timeout)
        if self.vcpus < 1:
            raise ConfigValueError(f"vm.cpus is {self.vcpus}: a desktop has at least 1 CPU")
        if not CPU_WEIGHT_MIN <= self.cpu_weight <= CPU_WEIGHT_MAX:
            raise ConfigValueError(
                f"vm.cpu.weight is {self.cpu_weight}: a relative CPU share is "
                f"{CPU_WEIGHT_MIN}..{CPU_WEIGHT_MAX} (100 = normal)"
            )

    # ---- database limits of the heartbeat path (derived from the fence timeout) ----------
    @property
    def heartbeat_call_timeout(self) -> float:
        """Seconds one heartbeat statement, or a silent TCP peer, may take."""
        return max(0.5, self.ticker_timeout / 4)

    @property
    def heartbeat_connect_timeout(self) -> int:
        """libpq ``connect_timeout`` (whole seconds; libpq treats < 2 as 2)."""
        return max(2, math.ceil(self.ticker_timeout / 4))

    @classmethod
    def from_config(cls, config: Config) -> HkdSettings:
        g, i, f, b = config.get, config.get_int, config.get_float, config.get_bool
        return cls(
            nodename=g("nodename"),
            hypervisor=g("vm.hypervisor"),
            bridge=g("vm.network.bridge"),
            manage_bridge=b("vm.network.bridge.manage"),
            firewall=b("internal.vm.network.firewall.enable"),
            ip_start=g("vm.network.ip.start"),
            netmask=g("vm.network.netmask"),
            mac_prefix=g("vm.network.mac.prefix"),
            device_prefix=g("internal.vm.network.device.prefix"),
            vma_port=i("internal.vm.port.vma"),
            x_port=i("internal.nxagent.display") + 4000,
            ssh_port=i("internal.vm.port.ssh"),
            images_dir=config.get_path("path.storage.images"),
            workers=i("internal.hkd.workers"),
            max_heavy=i("internal.hkd.max_heavy"),
            poll_delay=f("internal.hkd.poll.delay"),
            ticker_delay=f("internal.hkd.agent.ticker.delay"),
            ticker_timeout=f("internal.hkd.agent.ticker.timeout"),
            cluster_delay=f("internal.hkd.agent.cluster_monitor.delay"),
            node_timeout=f("internal.hkd.cluster.node.timeout"),
            vma_ok_delay=f("internal.hkd.vmhandler.vma_monitor.delay.after.ok"),
            vma_error_delay=f("internal.hkd.vmhandler.vma_monitor.delay.after.error"),
            vma_max_fail_running=f("internal.hkd.vmhandler.vma.failed.max_time.on.running"),
            vma_max_silent_running=f("internal.hkd.vmhandler.vma.silent.max_time.on.running"),
            vma_max_fail_starting=f("internal.hkd.vmhandler.vma.failed.max_time.on.starting"),
            rpc_timeout=f("internal.hkd.agent.rpc.timeout"),
            shutdown_timeout=f("internal.hkd.timeout.shutdown"),
            stop_timeout=f("internal.hkd.timeout.stop"),
            stop_vms_on_exit=b("internal.hkd.stopping.vms"),
            debug_keep_dead_vma=b("internal.vm.debug.enable"),
            overlay_persistent=b("vm.overlay.persistent"),
            vcpus=i("vm.cpus"),
            cpu_weight=i("vm.cpu.weight"),
            lock_path=config.get_path("internal.hkd.lock.path"),
            fence_kill_time=f("internal.hkd.fence.kill_time"),
            watchdog=b("internal.hkd.watchdog.enable"),
            lease_path=config.get_path("path.run") / "hkd.lease",
            watchdog_lock_path=config.get_path("path.run") / "hkd-watchdog.lock",
        )


def check_fence_order(fence: float, kill_time: float, lost: float) -> None:
    """Raise :class:`FenceOrderError` unless fence + kill time + jitter < lost."""
    jitter = fence_jitter(lost)
    if fence <= 0 or kill_time < 0 or fence + kill_time + jitter >= lost:
        raise FenceOrderError(
            f"internal.hkd.agent.ticker.timeout ({fence:g} s) + "
            f"internal.hkd.fence.kill_time ({kill_time:g} s) + jitter ({jitter:.2f} s) must "
            f"be below internal.hkd.cluster.node.timeout ({lost:g} s): a node cut off from "
            "the database must have killed its VMs before its peers may restart them"
        )
