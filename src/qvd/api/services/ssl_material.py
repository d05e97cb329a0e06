"""The L7R's TLS material as ``config_ssl`` receives it, checked before it is stored in
``ssl_configs`` under the keys the L7R reads (:mod:`qvd.l7r.tls`).

QVD's ``config_ssl`` took file paths on the API server, which let an administrator
have the server read any of its files. This one takes the PEM *contents*: ``cert``
(the certificate, optionally followed by its chain) and ``key`` (an unencrypted
private key that matches the first certificate) are required; ``ca`` (certificates)
and ``crl`` (one revocation list) are optional. Every refusal is 6320 and says what
is wrong without repeating the value. The key never reaches the audit log: see
:func:`audit_arguments`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from qvd.api.actions.audit import MASK
from qvd.api.errors import InvalidRequest, Status

__all__ = [
    "MAX_CHARS",
    "SSL_KEYS",
    "TlsMaterial",
    "audit_arguments",
    "check_material",
    "check_types",
]

# action argument -> ssl_configs key (the names qvd.l7r.tls and the HKD read)
SSL_KEYS: Mapping[str, str] = {
    "cert": "l7r.ssl.cert",
    "key": "l7r.ssl.key",
    "ca": "l7r.ssl.ca",
    "crl": "l7r.ssl.crl",
}
MAX_CHARS = 1 << 20
_PUBLIC = ("cert", "ca", "crl")
_MARKERS = {"cert": "CERTIFICATE", "key": "PRIVATE KEY", "ca": "CERTIFICATE", "crl": "X509 CRL"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsMaterial:
    """Checked PEM texts, each ending in one newline."""

    cert: str
    key: str
    ca: str | None = None
    crl: str | None = None

    def rows(self) -> dict[str, str | None]:
        """``ssl_configs`` key -> value (None: the row is removed)."""
        values = {"cert": self.cert, "key": self.key, "ca": self.ca, "crl": self.crl}
        return {SSL_KEYS[name]: value for name, value in values.items()}


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(f"config_ssl: {message}", Status.BAD_ARGUMENT_VALUE)


def check_types(arguments: Mapping[str, Any]) -> None:
    """Refuse non-text values before they reach generic argument checks, whose
    messages would quote them."""
    for name in SSL_KEYS:
        value = arguments.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _bad(f"{name!r} must be PEM text, not {type(value).__name__}")
        if "\x00" in value:
            raise _bad(f"{name!r} contains a NUL character")


def _pem(name: str, value: str) -> bytes:
    text = value.strip()
    marker = _MARKERS[name]
    if len(text) > MAX_CHARS:
        raise _bad(f"{name!r} is longer than {MAX_CHARS} characters")
    if "-----BEGIN " not in text:
        hint = ""
        if "\n" not in text and text.startswith(("/", "~", ".", "file:")):
            hint = " It looks like a file path: the API does not read files on its server; "
            hint += "send the file's contents instead."
        raise _bad(f"{name!r} must be PEM text ('-----BEGIN {marker}-----' ...).{hint}")
    if name in _PUBLIC and "PRIVATE KEY" in text:
        raise _bad(f"{name!r} contains a private key; only 'key' may hold one")
    if not text.isascii():
        raise _bad(f"{name!r} contains characters that are not ASCII; PEM is ASCII")
    return (text + "\n").encode("ascii")


def _certificates(name: str, value: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_pem(name, value))
    except ValueError:
        raise _bad(f"{name!r} holds no readable certificate (PEM 'CERTIFICATE' blocks)") from None


def _spki(public: Any) -> bytes:
    der: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _private_key(value: str) -> Any:
    data = _pem("key", value)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise _bad("'key' is encrypted; the L7R needs it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise _bad("'key' holds no readable private key (PEM 'PRIVATE KEY' block)") from None


def check_material(
    cert: str, key: str, ca: str | None = None, crl: str | None = None, *,
    now: dt.datetime | None = None,
) -> TlsMaterial:  # fmt: skip
    """The material, parsed and cross-checked; blank ``ca`` or ``crl`` count as absent."""
    chain = _certificates("cert", cert)
    leaf = chain[0]
    when = now or dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc < when:
        raise _bad(f"the certificate expired on {leaf.not_valid_after_utc.isoformat()}")
    private = _private_key(key)
    if _spki(private.public_key()) != _spki(leaf.public_key()):
        raise _bad("'key' does not belong to the (first) certificate in 'cert'")
    ca_text = ca.strip() if ca and ca.strip() else None
    crl_text = crl.strip() if crl and crl.strip() else None
    if ca_text is not None:
        _certificates("ca", ca_text)
    if crl_text is not None:
        try:
            x509.load_pem_x509_crl(_pem("crl", crl_text))
        except ValueError:
            raise _bad("'crl' holds no readable revocation list (PEM 'X509 CRL' block)") from None
    return TlsMaterial(
        cert=_pem("cert", cert).decode(), key=_pem("key", key).decode(),
        ca=None if ca_text is None else _pem("ca", ca_text).decode(),
        crl=None if crl_text is None else _pem("crl", crl_text).decode(),
    )  # fmt: skip


def audit_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a ``config_ssl`` call: a digest of each public part
    (which certificate was installed), and nothing of the key or of anything else."""
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        if name in _PUBLIC and isinstance(value, str):
            digest = hashlib.sha256(value.strip().encode()).hexdigest()
            out[name] = f"sha256:{digest} ({len(value)} characters)"
        else:
            out[name] = MASK
    return out
