"""The HKD's settings, read once from the configuration into one typed value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qvd.config import Config

__all__ = ["HkdSettings"]


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
    home_per_user: bool
    cpu_shares: int
    pids_max: int
    lock_path: Path

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
            home_per_user=b("vm.lxc.home.per.user"),
            cpu_shares=i("vm.lxc.cpu.shares"),
            pids_max=i("vm.lxc.pids.max"),
            lock_path=config.get_path("internal.hkd.lock.path"),
        )
