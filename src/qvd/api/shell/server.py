"""Serving the API over TLS with uvicorn: ``serve`` for ``qvd up`` and ``qvd api``.

Only loopback by default (``api.address`` 127.0.0.1, ``api.port`` 8444); TLS always;
HTTP/1.1 only. ``serve`` blocks until ``stop`` is set (or the server fails), and sets
``ready`` once the socket listens.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg
import uvicorn
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from qvd.api.errors import ServeError
from qvd.api.shell.app import create_app
from qvd.api.shell.tls import ensure_certificate
from qvd.config import Config
from qvd.db import ConnectionLimits, config_with_db, database_target, make_engine
from qvd.uvserve import ClosingAwareWSProtocol, listen_tcp

__all__ = ["ApiEndpoint", "api_endpoint", "login_instructions", "serve"]

log = logging.getLogger("qvd.api.server")


@dataclass(frozen=True, slots=True)
class ApiEndpoint:
    """Where the API listens and the certificate clients should trust."""

    url: str
    cert: Path
    key: Path
    certificate_created: bool


def api_endpoint(config: Config) -> ApiEndpoint:
    """The URL and certificate (made now if none is configured)."""
    address = config.get("api.address")
    port = config.get_int("api.port")
    cert = config.get_path("path.api.ssl.cert")
    key = config.get_path("path.api.ssl.key")
    created = ensure_certificate(cert, key, address)
    host = f"[{address}]" if ":" in address else address
    return ApiEndpoint(f"https://{host}:{port}/", cert, key, created)


def login_instructions(endpoint: ApiEndpoint, superadmin: str = "superadmin") -> list[str]:
    """Lines ``qvd up`` prints: the WAT's URL, where the API is and how to log in with
    ``qa``."""
    return [
        f"  WAT:      {endpoint.url} (web administration: log in as {superadmin}, tenant *)",
        f"  API:      {endpoint.url}api (TLS; certificate {endpoint.cert})",
        f"  OpenAPI:  {endpoint.url}api/v1/docs",
        f"  qa:       qa -u {endpoint.url} --ca {endpoint.cert} -l {superadmin} -t '*' "
        "-p <password> vm get",
        "            (or put qa.url, qa.ca, qa.login, qa.tenant in ~/.config/qvd/qa.conf)",
    ]


def _with_rows(config: Config, engine: Engine) -> Config:
    """The database's rows over the file, read once at start for the settings the API
    reads only then (its address and port, its login limiter: ``qvd.config.applies``);
    a database not ready yet leaves the file's (the app says what is wrong)."""
    try:
        return config_with_db(config, engine)
    except (DBAPIError, psycopg.Error) as exc:
        log.warning("configuration rows not read at start: %s", str(exc).splitlines()[0])
        return config


def serve(
    config: Config,
    *,
    engine: Engine | None = None,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    access_log: bool = False,
) -> None:
    """Run the API until ``stop`` is set. Without ``engine``, connect to the database
    the configuration names (``database_target``). With ``access_log``, uvicorn logs
    each request at INFO (credentials in query strings blanked: ``qvd.api.faces.ws``)."""
    own_engine = engine is None
    if engine is None:
        target = database_target(config)
        limits = ConnectionLimits.for_failover(target)  # a vanished primary is noticed
        engine = make_engine(target, limits=limits, pool_size=10, max_overflow=10)
    config = _with_rows(config, engine)
    endpoint = api_endpoint(config)
    uv_config = uvicorn.Config(
        create_app(config, engine),
        host=config.get("api.address"),
        port=config.get_int("api.port"),
        ssl_certfile=str(endpoint.cert),
        ssl_keyfile=str(endpoint.key),
        http="h11",
        ws=ClosingAwareWSProtocol,
        lifespan="off",
        log_level="info" if access_log else "warning",
        access_log=access_log,
        server_header=False,
    )
    server = uvicorn.Server(uv_config)
    stop_event = stop or threading.Event()
    try:
        listener = listen_tcp(uv_config.host, uv_config.port, backlog=2048)
    except OSError as exc:
        if own_engine:
            engine.dispose()
        raise ServeError(
            f"the admin API cannot listen on {uv_config.host}:{uv_config.port}: "
            f"{exc.strerror or exc}"
        ) from None

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and ready is not None:
            ready.set()
        while not task.done():
            if stop_event.is_set():
                server.should_exit = True
            await asyncio.sleep(0.1)
        await task

    try:
        asyncio.run(main())
    except SystemExit:  # uvicorn exits when it cannot bind or load the TLS files
        where = f"{uv_config.host}:{uv_config.port}"
        raise ServeError(
            f"the admin API could not listen on {where} with {endpoint.cert} (is the port "
            "taken, or are the certificate files unreadable?)"
        ) from None
    finally:
        listener.close()
        if own_engine:
            engine.dispose()
