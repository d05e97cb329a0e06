"""The daemons of a node put together: what its HKD hosts (the L7R listener, with the
user portal attached to it). Composed here, at the top, so that the daemons themselves
never import each other."""

from __future__ import annotations

from qvd.config import Config
from qvd.db import DatabaseTarget, database_target
from qvd.hkd.daemon import ServiceFactory
from qvd.hkd.store import HostRow
from qvd.l7r import L7rServer
from qvd.l7r.core import Attached, AttachFactory, L7rCore
from qvd.portal import PortalServer

__all__ = ["node_services"]


def node_services(config: Config, target: DatabaseTarget | None = None) -> list[ServiceFactory]:
    """Factories of the services an HKD runs once it knows its hosts row."""
    db = target or database_target(config)

    attach: list[AttachFactory] = []
    if config.get_bool("l7r.portal.enable") and config.get_bool("l7r.use_ssl"):
        attach.append(_portal)

    def l7r(host: HostRow) -> L7rServer:
        return L7rServer(config, db, host_id=host.id, host_address=host.address, attach=attach)

    return [l7r]


def _portal(core: L7rCore) -> Attached:
    return PortalServer(core)
