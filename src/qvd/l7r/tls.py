"""The L7R's TLS: key and certificate from ``ssl_configs`` or the config paths, a
self-signed pair when there is none, and a server context that offers only
``http/1.1`` by ALPN (curl offers h2 and real clients break on it)."""

from __future__ import annotations

import ssl
from pathlib import Path

from sqlalchemy import Engine, text

from qvd.config import Config
from qvd.selfsigned import self_signed, write_private

__all__ = ["ensure_certificate", "server_context"]


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert, key)
    return ctx


def ensure_certificate(
    config: Config, engine: Engine | None = None, *, host_address: str | None = None
) -> tuple[Path, Path]:
    """(cert, key) files for the listener: ``ssl_configs`` rows win, then existing files
    at ``path.l7r.ssl.cert``/``.key``, else a new self-signed pair written there."""
    cert_path = config.get_path("path.l7r.ssl.cert")
    key_path = config.get_path("path.l7r.ssl.key")
    if engine is not None:
        with engine.connect() as conn:
            rows = {
                str(k): str(v)
                for k, v in conn.execute(
                    text("SELECT key, value FROM ssl_configs WHERE key IN (:c, :k)"),
                    {"c": "l7r.ssl.cert", "k": "l7r.ssl.key"},
                )
            }
        if "l7r.ssl.cert" in rows and "l7r.ssl.key" in rows:
            write_private(cert_path, str(rows["l7r.ssl.cert"]).encode())
            write_private(key_path, str(rows["l7r.ssl.key"]).encode())
            return cert_path, key_path
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    addresses = ["127.0.0.1", *([host_address] if host_address else [])]
    cert, key = self_signed(["localhost", config.raw("nodename") or "qvd"], addresses)
    write_private(key_path, key)
    write_private(cert_path, cert)
    return cert_path, key_path
