"""The L7R's Prometheus metrics (``qvd_l7r_*``), kept in a registry of its own.

One ``L7rMetrics`` per L7R (tests run several in one process); the node's
``/metrics`` listener (``qvd.node.metrics``) serves it with the HKD's. The server, the
authenticator and the relay call it in single lines; the classification is here.
Labels are bounded: a connect's result class, a plugin's name, a direction; never a
user, a VM or an address.

- ``qvd_l7r_connects_total{result}``: ``connect_to_vm`` requests by how they ended
  (``ok`` once switched to the relay; else the class of the error: see
  :func:`connect_result`);
- ``qvd_l7r_auth_failures_total{plugin}``: refused logins by the part that refused
  (a plugin's name, ``ldap+default`` when every plugin of the chain declined,
  ``token``, ``request``, ``account``, ``rate_limit``);
- ``qvd_l7r_relay_bytes_total{direction}``: bytes relayed, ``in`` (client → desktop)
  and ``out`` (desktop → client), counted per chunk;
- ``qvd_l7r_sessions``: the sessions this node holds now (NX and browser).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from qvd.l7r.connect import Aborted
from qvd.l7r.errors import (
    Busy,
    DatabaseUnavailable,
    Forbidden,
    L7rError,
    NotFound,
    ProtocolError,
    TooManyAttempts,
    Unauthorized,
    Unavailable,
)

__all__ = ["CONNECT_RESULTS", "L7rMetrics", "connect_result"]

CONNECT_RESULTS = (
    "ok",
    "auth_failed",
    "rate_limited",
    "no_vm",
    "forbidden",
    "busy",
    "aborted",
    "db_unavailable",
    "unavailable",
    "bad_request",
    "error",
)


# (error class, result label), most specific first: a subclass before its base
_RESULT_OF: tuple[tuple[type[BaseException], str], ...] = (
    (TooManyAttempts, "rate_limited"),  # an Unauthorized
    (Unauthorized, "auth_failed"),
    (NotFound, "no_vm"),
    (Forbidden, "forbidden"),
    (Busy, "busy"),  # Busy, DatabaseUnavailable, Aborted: each an Unavailable
    (DatabaseUnavailable, "db_unavailable"),
    (Aborted, "aborted"),  # taken over by another client meanwhile
    (Unavailable, "unavailable"),
    (ProtocolError, "bad_request"),
)


def connect_result(exc: BaseException | None) -> str:
    """The ``result`` label of a connect that ended with ``exc`` (None: switched)."""
    if exc is None:
        return "ok"
    for error, result in _RESULT_OF:
        if isinstance(exc, error):
            return result
    return "bad_request" if isinstance(exc, L7rError) and exc.status < 500 else "error"


class L7rMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.connects = Counter(
            "qvd_l7r_connects", "connect_to_vm requests by result", ["result"], registry=r
        )
        for result in CONNECT_RESULTS:
            self.connects.labels(result)
        self.auth_failures = Counter(
            "qvd_l7r_auth_failures", "Refused logins by the plugin (or step) that refused",
            ["plugin"], registry=r,
        )  # fmt: skip
        relayed = Counter(
            "qvd_l7r_relay_bytes", "Bytes relayed between clients and desktops",
            ["direction"], registry=r,
        )  # fmt: skip
        # bound once: the relay adds to these per chunk (no label lookup in the loop)
        self.relayed_in = relayed.labels("in")
        self.relayed_out = relayed.labels("out")
        self.sessions = Gauge(
            "qvd_l7r_sessions", "Sessions this node holds now (NX and browser)", registry=r
        )

    def connected(self, exc: BaseException | None = None) -> None:
        """A ``connect_to_vm`` ended: switched to the relay (None) or refused."""
        self.connects.labels(connect_result(exc)).inc()

    def auth_failed(self, source: str) -> None:
        self.auth_failures.labels(source).inc()

    def watch_sessions(self, count: Callable[[], int]) -> None:
        """Where the number of sessions is read at each scrape."""
        self.sessions.set_function(lambda: float(count()))
