"""``PortalServer(core)``: the portal's uvicorn in a thread of the node's HKD, over TLS
with the L7R's certificate, on ``l7r.portal.address``:``l7r.portal.port``.

``start()`` binds the socket itself (a taken port is a clear error at once) and
returns once uvicorn serves; ``stop()`` ends it (open browser sessions close).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading

import uvicorn

from qvd.l7r.core import L7rCore
from qvd.portal.app import make_app
from qvd.uvserve import ClosingAwareWSProtocol, listen_tcp

__all__ = ["PortalServer"]

log = logging.getLogger(__name__)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def _listen(address: str, port: int) -> socket.socket:
    host = "0.0.0.0" if address in ("*", "") else address  # noqa: S104 - `*` means all
    return listen_tcp(host, port, backlog=1024)


class PortalServer:
    def __init__(self, core: L7rCore) -> None:
        self.core = core
        self.port = 0
        self.address = core.config.get("l7r.portal.address").strip()
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.address in ("*", "", "0.0.0.0") else self.address  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{self.port}/"

    def _tls(self) -> ssl.SSLContext:
        if self.core.ssl_context is not None:
            return self.core.ssl_context
        if self.core.cert_files is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.core.cert_files)
            return context
        raise RuntimeError(
            "the user portal needs TLS (its session cookie is Secure): turn l7r.use_ssl on "
            "or l7r.portal.enable off"
        )

    def start(self) -> None:
        context = self._tls()
        port = self.core.config.get_int("l7r.portal.port")
        try:
            listener = _listen(self.address, port)
        except OSError as exc:
            raise RuntimeError(
                f"the user portal cannot listen on {self.address}:{port}: {exc.strerror or exc}"
            ) from None
        self.port = int(listener.getsockname()[1])
        uv_config = uvicorn.Config(
            make_app(self.core),
            http="h11",
            ws=ClosingAwareWSProtocol,
            lifespan="off",
            log_level="warning",
            access_log=False,  # no request lines (nothing secret is in a URL, still)
            server_header=False,
            ws_max_size=1024 * 1024,
            timeout_graceful_shutdown=5,
        )
        uv_config.load()
        uv_config.ssl = context
        server = uvicorn.Server(uv_config)
        self._server = server
        started = threading.Event()

        def run() -> None:
            async def main() -> None:
                task = asyncio.create_task(server.serve(sockets=[listener]))
                while not server.started and not task.done():
                    await asyncio.sleep(0.02)
                started.set()
                await task

            try:
                asyncio.run(main())
            except BaseException as exc:  # SystemExit from uvicorn too
                self._failure = exc
                log.error("the user portal stopped: %s", exc)
            finally:
                listener.close()
                started.set()

        self._thread = threading.Thread(target=run, name="portal", daemon=True)
        self._thread.start()
        started.wait(START_TIMEOUT)
        if not server.started:
            self.stop()
            raise RuntimeError(f"the user portal did not start: {self._failure or 'timeout'}")
        log.info("user portal on %s", self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                assert self._server is not None
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT)
            self._thread = None
