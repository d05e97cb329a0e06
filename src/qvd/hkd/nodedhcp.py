"""The node's DHCP as the HKD runs it: its dnsmasq (:mod:`qvd.hkd.dnsmasq`) serving the
lease book (:mod:`qvd.hkd.dhcp`), which follows the database's VM rows (at each change
of one, ``changed``, and every poll) and the reconciler (``before_start``: a VM's lease,
with the gateway its start decided, is served before it can ask).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from qvd.hkd import store
from qvd.hkd.backends import VmSpec
from qvd.hkd.dhcp import DhcpSettings, LeaseBook, VmAddress
from qvd.hkd.dnsmasq import Dnsmasq

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
    ) -> None:
        self.server = Dnsmasq(settings)
        self.leases = LeaseBook(settings.network, mac_prefix, self.server.set_leases)
        self._engine = engine
        self._changed = threading.Event()

    def start(self) -> None:
        """Serve the database's leases (raises :class:`~qvd.hkd.dnsmasq.DhcpError`)."""
        self.sync()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def sync(self) -> None:
        """Serve exactly the VM rows of the database."""
        with self._engine.begin() as conn:
            rows = [VmAddress(*row) for row in store.vm_addresses(conn)]
        self.leases.sync(rows)

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
