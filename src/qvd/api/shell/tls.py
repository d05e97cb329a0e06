"""The API's TLS certificate: the configured files, or a self-signed one generated
on first start (ECDSA P-256, valid ten years, subjectAltName for localhost, 127.0.0.1,
::1 and the listen address, so that clients that verify, such as qa4, can be given
the certificate itself as their CA file)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from qvd.selfsigned import self_signed, write_private

__all__ = ["ensure_certificate"]


def _names(address: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the certificate is for."""
    names = ["localhost"]
    ips = {"127.0.0.1", "::1"}
    try:
        ipaddress.ip_address(address)
        ips.add(address)
    except ValueError:
        if address:
            names.append(address)
    hostname = socket.gethostname()
    if hostname and hostname != "localhost":
        names.append(hostname)
    return names, [ip for ip in sorted(ips) if not ipaddress.ip_address(ip).is_unspecified]


def ensure_certificate(cert: Path, key: Path, address: str) -> bool:
    """Make a self-signed certificate and key if either file is missing; True if made."""
    if cert.is_file() and key.is_file():
        return False
    names, ips = _names(address)
    cert_pem, key_pem = self_signed(names, ips, common_name="QVD admin API")
    write_private(key, key_pem)
    cert.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(cert_pem)
    return True
