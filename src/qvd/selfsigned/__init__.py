"""Self-signed TLS material for listeners that have none configured (the L7R and the
admin API): an ECDSA P-256 key and a certificate that is its own CA (so that a client
that verifies can be given the certificate itself as its CA file), and writing a
private file with mode 0600 from its creation."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["self_signed", "write_private"]


def self_signed(
    names: Sequence[str],
    addresses: Sequence[str],
    *,
    common_name: str | None = None,
    days: int = 3650,
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) valid for the DNS ``names`` and IP ``addresses``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cn = common_name or (names[0] if names else "qvd")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
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
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by its owner only from the start."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)
