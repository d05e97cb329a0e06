"""The node's DHCP as the HKD runs it: its dnsmasq (:mod:`qvd.hkd.dnsmasq`) serving the
lease book (:mod:`qvd.hkd.dhcp`), which follows the database's VM rows (at each change
of one, ``changed``, and every poll) and the reconciler (``before_start``: a VM's lease,
with the gateway its start decided, is served before it can ask).

An HKD that restarts finds running VMs whose starts it did not see: those the node's
egress set still lets out keep the gateway in their lease (renewals keep their route).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from qvd.hkd import store
from qvd.hkd.addressing import host_device
from qvd.hkd.backends import VmSpec
from qvd.hkd.dhcp import DhcpSettings, LeaseBook, VmAddress
from qvd.hkd.dnsmasq import Dnsmasq
from qvd.hkd.egress import Egress

__all__ = ["NodeDhcp"]

log = logging.getLogger("qvd.hkd.dhcp")


class NodeDhcp:
    """One node's dnsmasq and its leases. ``CHANNELS``: the notifications whose arrival
    the HKD's listener passes on to ``changed``."""

    CHANNELS = ("vm_created", "vm_changed", "vm_deleted")  # a VM row's address may move

    def __init__(
        self,
        settings: DhcpSettings,
        engine: Engine,
        *,
        mac_prefix: str,
        device_prefix: str,
        egress: Egress | None = None,
    ) -> None:
        self.server = Dnsmasq(settings)
        # what a VM that may go out is told to use: the node's dnsmasq, when it answers DNS
        self.dns_servers: tuple[str, ...] = (settings.server_address,) if settings.dns else ()
        self.leases = LeaseBook(settings.network, mac_prefix, self.server.set_leases)
        self._engine = engine
        self._device_prefix = device_prefix
        self._egress = egress
        self._changed = threading.Event()

    def start(self) -> None:
        """Serve the database's leases (raises :class:`~qvd.hkd.dnsmasq.DhcpError`)."""
        self.sync(adopt=True)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def sync(self, *, adopt: bool = False) -> None:
        """Serve exactly the VM rows of the database; with ``adopt``, the VMs the egress
        set lets out (started before this HKD) get their gateway back."""
        with self._engine.begin() as conn:
            rows = [VmAddress(*row) for row in store.vm_addresses(conn)]
        self.leases.sync(rows, gateways=self._let_out(rows) if adopt else None)

    def _let_out(self, rows: list[VmAddress]) -> dict[int, str]:
        if self._egress is None:
            return {}
        out = self._egress.allowed.allowed()  # host device → address
        gateway = self._egress.rules.gateway
        return {
            vm.vm_id: gateway
            for vm in rows
            if vm.ip and out.get(host_device(self._device_prefix, vm.vm_id)) == vm.ip
        }

    def before_start(self, spec: VmSpec) -> None:
        net = spec.network
        self.leases.before_start(
            spec.vm_id, spec.name, mac=net.mac, ip=net.address, gateway=net.gateway
        )

    def changed(self) -> None:
        """A VM row was added, changed or deleted: the keeper syncs soon."""
        self._changed.set()

    def keep(
        self, stop: threading.Event, poll: float, transient: tuple[type[Exception], ...]
    ) -> None:
        """Leases follow the database until ``stop``: at each change, and every ``poll``
        seconds; a ``transient`` error (the database away) waits for the next turn."""
        while not stop.is_set():
            self._changed.wait(poll)
            self._changed.clear()
            if stop.is_set():
                return
            try:
                self.sync()
            except transient as exc:
                log.warning("DHCP leases not updated: %s", exc)
