"""Prometheus metrics at ``/metrics``: request counts and latency per route, and the
number of VMs, users and hosts by state, read from the database at each scrape.

Who may scrape (``MetricsGate``): with ``metrics.token`` set in node.conf (a secret,
node-local token: no database row can set it), only a request carrying
``Authorization: Bearer <token>`` (401 otherwise, compared in constant time); without
it, only a client on a loopback address (403 otherwise). Labels hold route templates
and states, never a path, a login or a token."""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from qvd.db.models import Host, HostRuntime, VmRuntime

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsGate", "MetricsMiddleware", "Refusal", "is_loopback"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def is_loopback(host: str | None) -> bool:
    """Whether a peer address is a loopback one (IPv4-mapped IPv6 included)."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class MetricsGate:
    """The access rule of ``/metrics`` (pure: no request object inside)."""

    token: str = ""

    def refusal(self, client_host: str | None, authorization: str | None) -> Refusal | None:
        """None if the scrape may proceed, else what to answer."""
        if self.token:
            scheme, _, given = (authorization or "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            ):
                return None
            return Refusal(
                401, "/metrics needs the bearer token set as metrics.token on this node\n",
                {"WWW-Authenticate": 'Bearer realm="qvd-metrics"'},
            )  # fmt: skip
        if is_loopback(client_host):
            return None
        return Refusal(
            403, "/metrics answers only loopback clients unless metrics.token is set\n", {}
        )


class _StateCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        vms = GaugeMetricFamily("qvd_vms", "VMs by state", labels=["state"])
        users = GaugeMetricFamily("qvd_user_sessions", "VM user states", labels=["state"])
        hosts = GaugeMetricFamily("qvd_hosts", "Hosts by state", labels=["state"])
        backends = GaugeMetricFamily(
            "qvd_host_backend",
            "The hypervisor backend each node's HKD runs and the accelerator it chose",
            labels=["host", "backend", "accel"],
        )
        with Session(self.engine) as session:
            for state, n in session.execute(
                select(VmRuntime.vm_state, func.count()).group_by(VmRuntime.vm_state)
            ):
                vms.add_metric([state], n)
            for state, n in session.execute(
                select(VmRuntime.user_state, func.count()).group_by(VmRuntime.user_state)
            ):
                users.add_metric([state], n)
            for state, n in session.execute(
                select(HostRuntime.state, func.count()).group_by(HostRuntime.state)
            ):
                hosts.add_metric([state], n)
            for name, facts in session.execute(
                select(Host.name, HostRuntime.backend_facts)
                .join(HostRuntime, HostRuntime.host_id == Host.id)
                .where(HostRuntime.backend_facts.is_not(None))
            ):
                chosen = _facts(facts)
                backends.add_metric([name, chosen.get("backend", ""), chosen.get("accel", "")], 1)
        yield vms
        yield users
        yield hosts
        yield backends


def _facts(stored: str | None) -> dict[str, str]:
    """The JSON an HKD wrote (``qvd.hkd.store.set_backend_facts``); {} if unreadable."""
    try:
        value = json.loads(stored or "{}")
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


class Metrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "qvd_api_requests", "API requests", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "qvd_api_request_seconds", "API request latency", ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.registry.register(_StateCollector(engine))

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    @staticmethod
    def _route(scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        return str(path) if path else "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, object]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])  # type: ignore[call-overload]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)  # type: ignore[arg-type]
        finally:
            route = self._route(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
