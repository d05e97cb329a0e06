"""The daemons of a node put together: what its HKD hosts (the L7R listener, with the
user portal attached to it, and the node's ``/metrics``). Composed here, at the top, so
that the daemons themselves never import each other.

Metrics: pass the HKD's ``HkdMetrics`` (``Hkd(..., metrics=m)``) as ``metrics=m``; the
L7R then keeps its figures in the same registry and ``metrics.port`` serves them all."""

from __future__ import annotations

from qvd.config import Config
from qvd.db import DatabaseTarget, database_target
from qvd.hkd.daemon import HostedService, ServiceFactory
from qvd.hkd.metrics import HkdMetrics
from qvd.hkd.store import HostRow
from qvd.l7r import L7rServer
from qvd.l7r.core import Attached, AttachFactory, L7rCore
from qvd.l7r.metrics import L7rMetrics
from qvd.node.metrics import NodeMetricsServer, listen_address
from qvd.portal import PortalServer

__all__ = ["node_services"]


def node_services(
    config: Config, target: DatabaseTarget | None = None, *, metrics: HkdMetrics | None = None
) -> list[ServiceFactory]:
    """Factories of the services an HKD runs once it knows its hosts row (with
    ``metrics``, the HKD's: the node's ``/metrics`` when ``metrics.port`` is set)."""
    db = target or database_target(config)
    registry = metrics.registry if metrics is not None else None
    serve_metrics = registry is not None and listen_address(config) is not None

    attach: list[AttachFactory] = []
    if config.get_bool("l7r.portal.enable") and config.get_bool("l7r.use_ssl"):
        attach.append(_portal)

    def l7r(host: HostRow) -> L7rServer:
        return L7rServer(
            config, db, host_id=host.id, host_address=host.address, attach=attach,
            metrics=L7rMetrics(registry),
        )  # fmt: skip

    def node_metrics(host: HostRow) -> HostedService:
        assert registry is not None
        return NodeMetricsServer(config, registry, host.address)

    return [l7r, node_metrics] if serve_metrics else [l7r]


def _portal(core: L7rCore) -> Attached:
    return PortalServer(core)
