"""The L7R's TLS: key and certificate from ``ssl_configs`` or the config paths, a
self-signed pair when there is none, and a server context that offers only
``http/1.1`` by ALPN (curl offers h2 and real clients break on it)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, text

from qvd.config import Config

__all__ = ["ensure_certificate", "self_signed", "server_context"]


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert, key)
    return ctx


def self_signed(
    names: Sequence[str], addresses: Sequence[str], days: int = 3650
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) valid for ``names`` and ``addresses``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "qvd")])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(addresses)]
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


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
            _write_private(cert_path, str(rows["l7r.ssl.cert"]).encode())
            _write_private(key_path, str(rows["l7r.ssl.key"]).encode())
            return cert_path, key_path
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    addresses = ["127.0.0.1", *([host_address] if host_address else [])]
    cert, key = self_signed(["localhost", config.raw("nodename") or "qvd"], addresses)
    _write_private(key_path, key)
    _write_private(cert_path, cert)
    return cert_path, key_path
