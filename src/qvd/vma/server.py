"""The VMA's HTTP server: authentication, then the method table; nothing else.

Every request needs ``Authorization: Bearer <secret>``; without it the answer is 401
and no method runs. Only the method name and the status are logged (never a query
string, a body or a header). HTTP/1.1 keep-alive, one thread per connection.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Callable
from typing import Any

from qvd.vma.auth import SecretStore, authorized
from qvd.vma.methods import Agent, Reply, dispatch
from qvd.vma.simplerpc import CONTENT_TYPE, encode_error, parse_params, parse_target
from qvd.vma.vnc import VncRefused, VncService, parse_vnc_request

__all__ = ["MAX_BODY", "VmaHTTPServer", "make_server"]

log = logging.getLogger("qvd.vma.server")
MAX_BODY = 64 * 1024


class VmaHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        agent: Agent,
        secrets: SecretStore,
        vnc: VncService | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.agent = agent
        self.secrets = secrets
        self.vnc = vnc


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qvd-vma/1"
    sys_version = ""
    server: VmaHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # the default logs the whole request line; see _log below

    def _log(self, method: str, status: int) -> None:
        log.info("%s %s -> %d", self.client_address[0], method, status)

    def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length", "0")
        try:
            length = int(length_text)
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self, with_body: bool) -> None:
        body = self._read_body() if with_body else b""
        if body is None:
            self.close_connection = True
            self._send(400, encode_error("bad or oversized body"))
            return
        target = parse_target(self.path)
        name = target[0] if target else "?"
        if not authorized(self.headers.get("Authorization"), self.server.secrets.current()):
            self._send(
                401,
                encode_error("authentication required"),
                {"WWW-Authenticate": 'Bearer realm="qvd-vma"'},
            )
            self._log(name, 401)
            return
        if target is None:
            self._send(404, encode_error("not a VMA method path"))
            self._log(name, 404)
            return
        method, params = target
        if method == "vnc_connect" and not with_body:
            self._vnc_connect({key: values[-1] for key, values in params.items() if values})
            return
        if body:
            for key, values in parse_params(body.decode("utf-8", "replace")).items():
                params.setdefault(key, []).extend(values)
        reply: Reply = dispatch(self.server.agent, method, params, self.client_address[0])
        self._send(reply.status, reply.body)
        self._log(method, reply.status)
        if reply.after is not None:
            after: Callable[[], None] = reply.after
            threading.Thread(target=after, name="vma-after", daemon=True).start()

    def _vnc_connect(self, params: dict[str, str]) -> None:
        """The upgrade to an RFB stream (``qvd.vma.vnc``); errors are plain text."""
        self.close_connection = True
        service = self.server.vnc
        upgraded = False

        def accepted() -> None:
            nonlocal upgraded
            self.send_response(101)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "VNC")
            self.end_headers()
            self.wfile.flush()
            upgraded = True
            self._log("vnc_connect", 101)

        try:
            if service is None:
                raise VncRefused(404, "vnc_connect is not available on this agent")
            headers = {key.lower(): value for key, value in self.headers.items()}
            request = parse_vnc_request(params, headers)
            service.serve(request, self.connection, accepted)
        except VncRefused as exc:
            if upgraded:
                log.warning("vnc_connect ended: %s", exc.reason)
                return
            body = exc.reason.encode() + b"\n"
            self.send_response(exc.status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self._log("vnc_connect", exc.status)

    def do_GET(self) -> None:
        self._handle(with_body=False)

    def do_POST(self) -> None:
        self._handle(with_body=True)


def make_server(
    host: str, port: int, agent: Agent, secrets: SecretStore, *, vnc: VncService | None = None
) -> VmaHTTPServer:
    return VmaHTTPServer((host, port), agent, secrets, vnc)
