"""An attacker's web site for the WAT's attack tests: a small HTTP(S) server on another
loopback port that serves fixed pages (with inline scripts: it is the attacker's, no
CSP) and records the requests it received.

``https=True`` serves with the WAT's own test certificate on 127.0.0.1: another origin
of the *same site* as the WAT (a browser sends it SameSite=Strict cookies), so only the
anti-CSRF token and the WebSocket origin check stand in the way. ``host="localhost"``
over plain HTTP is another *site*."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["ABORTED_ON_LEAVING", "Attacker", "attacker_site"]

ABORTED_ON_LEAVING = r"^requestfailed: \S+/static/favicon\.svg net::ERR_ABORTED"
"""A browser error the attack tests allow: a page left while its icon loads (the browser
drops that request; harmless)."""


@dataclass
class Attacker:
    """A running attacker site: its base URL, its pages, the paths it was asked for."""

    base: str
    pages: dict[str, str]
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def attacker_site(
    pages: dict[str, str], *, certs: Path | None = None, host: str = "127.0.0.1"
) -> Iterator[Attacker]:
    """Serve ``pages`` (path → HTML) on a free loopback port; over TLS with
    ``certs/cert.pem`` and ``certs/key.pem`` when ``certs`` is given. Stopped on exit."""

    attacker: Attacker

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            attacker.requests.append(self.path)
            body = attacker.pages.get(self.path.split("?", 1)[0])
            if body is None:  # /favicon.ico and the like: nothing, and no error
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if certs is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs / "cert.pem", certs / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    port = server.server_address[1]
    attacker = Attacker(f"{scheme}://{host}:{port}", dict(pages))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield attacker
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
