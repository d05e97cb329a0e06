"""The node's ``GET /metrics``: the HKD's and the L7R's registries (one registry per
node process, ``qvd.hkd.metrics`` + ``qvd.l7r.metrics``) over TLS, on ``metrics.port``.

Access is the API's rule (``qvd.api.shell.metrics.MetricsGate``): with ``metrics.token``
set in node.conf, only a request with ``Authorization: Bearer <token>`` (401 else,
compared in constant time); without it, only loopback clients (403 else). On top, the
listener refuses to start on a non-loopback ``metrics.address`` without a token: no
unauthenticated metrics on a public address. The certificate is the L7R's
(``qvd.l7r.tls.ensure_certificate``); TLS is not optional.

Blocking and small: a ``ThreadingHTTPServer`` with a thread per scrape; the TLS
handshake happens in that thread (never in the accept loop) and every connection has
a timeout, so a silent client holds one thread for ``TIMEOUT`` seconds at most, and at
most ``MAX_CONNECTIONS`` are served at once: more are closed at once (a flood of
connections costs the node no more threads; Prometheus scrapes one at a time).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from qvd.api.shell.metrics import CONTENT_TYPE, MetricsGate
from qvd.config import Config
from qvd.hkd.daemon import HkdStartError
from qvd.l7r.tls import ensure_certificate, server_context

__all__ = ["MetricsListenerError", "NodeMetricsServer", "listen_address"]

log = logging.getLogger("qvd.node.metrics")

TIMEOUT = 10.0  # seconds a scrape's connection may stay silent (handshake included)
MAX_CONNECTIONS = 8  # served at once; more are closed at once
THREAD_NAME = "node-metrics-scrape"


class MetricsListenerError(HkdStartError):
    """The node's /metrics cannot be served as configured; the message says why."""


def listen_address(config: Config) -> tuple[str, int] | None:
    """(address, port) the node's /metrics listens on; None when ``metrics.port`` is
    0. Refuses a non-loopback address without ``metrics.token``."""
    port = config.get_int("metrics.port")
    if port == 0:
        return None
    if not 0 < port < 65536:
        raise MetricsListenerError(f"metrics.port = {port} is not a TCP port (1-65535, or 0)")
    raw = config.get("metrics.address").strip()
    address = "::" if raw in ("*", "") else raw
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise MetricsListenerError(
            f"metrics.address = {raw!r} is not an IP address (or * for every address)"
        ) from None
    if not parsed.is_loopback and not config.get("metrics.token"):
        raise MetricsListenerError(
            f"metrics.address = {raw} is not a loopback address: set metrics.token in "
            "node.conf (a scraper then sends it as a bearer token), or listen on 127.0.0.1"
        )
    return address, port


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        where: tuple[str, int],
        context: ssl.SSLContext,
        registry: CollectorRegistry,
        gate: MetricsGate,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in where[0] else socket.AF_INET
        self.context = context
        self.registry = registry
        self.gate = gate
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(where, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:  # "::" takes IPv4 clients too
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def get_request(self) -> tuple[Any, Any]:
        sock, peer = self.socket.accept()
        sock.settimeout(TIMEOUT)
        # the handshake runs on the first read, in the request's own thread
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), peer

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: this one is closed
            return
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address),
            name=THREAD_NAME, daemon=True,
        )  # fmt: skip
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("node /metrics: a connection from %s failed", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, b"only /metrics is served here\n", {})
            return
        refusal = self.server.gate.refusal(
            self.client_address[0], self.headers.get("Authorization")
        )
        if refusal is not None:
            self._answer(refusal.status, refusal.reason.encode(), dict(refusal.headers))
            return
        self._answer(200, generate_latest(self.server.registry), {}, CONTENT_TYPE)

    def _answer(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str],
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # no request lines in the logs (a token never goes there anyway)


class NodeMetricsServer:
    """A service the HKD hosts (``start``/``stop``); ``port`` once started."""

    def __init__(self, config: Config, registry: CollectorRegistry, host_address: str) -> None:
        self._config = config
        self._registry = registry
        self._host_address = host_address
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> None:
        where = listen_address(self._config)
        if where is None:
            return
        cert, key = ensure_certificate(self._config, host_address=self._host_address)
        context = server_context(cert, key)
        gate = MetricsGate(self._config.get("metrics.token"))
        try:
            self._server = _Server(where, context, self._registry, gate)
        except OSError as exc:
            raise MetricsListenerError(
                f"the node's /metrics cannot listen on {where[0]} port {where[1]}: {exc}"
            ) from None
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
            name="node-metrics", daemon=True,
        )  # fmt: skip
        self._thread.start()
        log.info("node /metrics on %s port %s (TLS)", where[0], self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
