"""The API's TLS certificate: the configured files, or a self-signed one generated
on first start (ECDSA P-256, valid ten years, subjectAltName for localhost, 127.0.0.1,
::1 and the listen address, so that clients that verify, such as qa4, can be given
the certificate itself as their CA file)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["ensure_certificate"]


def _names(address: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    ips = {"127.0.0.1", "::1"}
    try:
        ipaddress.ip_address(address)
        ips.add(address)
    except ValueError:
        if address:
            names.append(x509.DNSName(address))
    hostname = socket.gethostname()
    if hostname and hostname != "localhost":
        names.append(x509.DNSName(hostname))
    for ip in sorted(ips):
        parsed = ipaddress.ip_address(ip)
        if not parsed.is_unspecified:
            names.append(x509.IPAddress(parsed))
    return names


def ensure_certificate(cert: Path, key: Path, address: str) -> bool:
    """Make a self-signed certificate and key if either file is missing; True if made."""
    if cert.is_file() and key.is_file():
        return False
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "QVD admin API")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(_names(address)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(private, hashes.SHA256())
    )
    for path in (cert, key):
        path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return True
