"""``config_ssl``: the L7R's TLS material as PEM text, superadmins only, the key never
in the audit log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, text

from qvd.l7r.tls import ensure_certificate
from qvd.selfsigned import self_signed
from tests.api.conftest import Api, World, api_config

NOW = dt.datetime.now(dt.UTC)


# ---- config_ssl ------------------------------------------------------------------------------
def _pair(*, not_after: dt.datetime | None = None, encrypt: bytes | None = None) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a new self-signed EC certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "l7r.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(not_after or NOW + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(encrypt) if encrypt else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def _crl() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca.test")])
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def _ssl_rows(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {str(k): str(v) for k, v in conn.execute(text("SELECT key, value FROM ssl_configs"))}


def test_config_ssl_stores_the_pem_texts_the_l7r_reads(
    api: Api, world: World, api_engine: Engine, tmp_path: Path
) -> None:
    with api_engine.begin() as conn:
        conn.execute(text("INSERT INTO ssl_configs VALUES ('vma.secret.master', 's3cr3t')"))
    cert, key = _pair()
    ca, _ = self_signed(["ca.test"], [])
    crl = _crl()
    sid = api.login("root")
    r = api.act(
        "config_ssl",
        sid=sid,
        arguments={"cert": cert, "key": "\n" + key + "\n\n", "ca": ca.decode(), "crl": crl},
    )
    assert r == {"status": 0, "message": "Successful completion", "total": 1, "rows": []}
    assert _ssl_rows(api_engine) == {
        "l7r.ssl.cert": cert,
        "l7r.ssl.key": key,
        "l7r.ssl.ca": ca.decode(),
        "l7r.ssl.crl": crl,
        "vma.secret.master": "s3cr3t",
    }

    # the L7R writes exactly these files before it listens
    config = api_config(
        tmp_path,
        **{
            "path.l7r.ssl.cert": str(tmp_path / "l7r/cert.pem"),
            "path.l7r.ssl.key": str(tmp_path / "l7r/key.pem"),
        },
    )
    cert_path, key_path = ensure_certificate(config, api_engine)
    assert (cert_path.read_text(), key_path.read_text()) == (cert, key)

    # a new pair without CA and CRL replaces the whole set (no stale CA left behind)
    cert2, key2 = _pair()
    r = api.act("config_ssl", sid=sid, arguments={"cert": cert2, "key": key2, "ca": "  "})
    assert r["status"] == 0, r
    assert _ssl_rows(api_engine) == {
        "l7r.ssl.cert": cert2,
        "l7r.ssl.key": key2,
        "vma.secret.master": "s3cr3t",
    }


_CERT, _KEY = _pair()
_OTHER_CERT, _OTHER_KEY = _pair()
_OLD_CERT, _OLD_KEY = _pair(not_after=NOW - dt.timedelta(days=1))
_LOCKED_CERT, _LOCKED_KEY = _pair(encrypt=b"passphrase")


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        ({"cert": "/etc/qvd/l7r/cert.pem", "key": _KEY}, 6320, "looks like a file path"),
        ({"cert": _CERT, "key": "/etc/qvd/l7r/key.pem"}, 6320, "looks like a file path"),
        ({"cert": "not pem at all\nreally", "key": _KEY}, 6320, "must be PEM text"),
        (
            {"cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "key": _KEY},
            6320,
            "no readable certificate",
        ),
        ({"cert": _CERT, "key": _OTHER_KEY}, 6320, "does not belong"),
        ({"cert": _OLD_CERT, "key": _OLD_KEY}, 6320, "expired"),
        ({"cert": _LOCKED_CERT, "key": _LOCKED_KEY}, 6320, "encrypted"),
        ({"cert": _CERT, "key": _CERT}, 6320, "no readable private key"),
        ({"cert": _CERT + _KEY, "key": _KEY}, 6320, "contains a private key"),
        ({"cert": _CERT, "key": _KEY, "ca": _OTHER_KEY}, 6320, "contains a private key"),
        (
            {
                "cert": _CERT,
                "key": _KEY,
                "ca": "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
            },
            6320,
            "'ca' holds no readable certificate",
        ),
        ({"cert": _CERT, "key": _KEY, "crl": _CERT}, 6320, "'crl' holds no readable"),
        ({"cert": _CERT, "key": _KEY + "é"}, 6320, "not ASCII"),
        ({"cert": _CERT, "key": 42}, 6320, "'key' must be PEM text, not int"),
        ({"cert": _CERT, "key": "a\x00b"}, 6320, "NUL"),
        ({"cert": "x" * (2**20 + 1), "key": _KEY}, 6320, "longer than"),
        ({"cert": _CERT}, 6240, "'key'"),
        ({"key": _KEY}, 6240, "'cert'"),
        ({"cert": _CERT, "key": _KEY, "path": "/etc/shadow"}, 6230, "'path'"),
    ],
)
def test_config_ssl_refuses_what_the_l7r_could_not_use(
    args: dict[str, Any], status: int, words: str, shared: tuple[Api, World, Engine]
) -> None:
    api, _world, engine = shared
    before = _ssl_rows(engine)
    r = api.act("config_ssl", sid=api.login("root"), arguments=args)
    assert (r["status"], words in r["message"]) == (status, True), r
    assert all(line not in r["message"] for line in _KEY.splitlines()[1:-1])
    assert _ssl_rows(engine) == before


def test_config_ssl_is_for_superadmins_only(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")  # Root role: holds config.qvd.
    r = api.act("config_ssl", sid=sid, arguments={"cert": _CERT, "key": _KEY})
    assert (r["status"], "superadmins" in r["message"]) == (4210, True), r
    assert _ssl_rows(api_engine) == {}


def test_the_key_never_reaches_the_audit_log(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("root")
    ok = api.act("config_ssl", sid=sid, arguments={"cert": _CERT, "key": _KEY, "crl": _crl()})
    assert ok["status"] == 0, ok
    refused = api.act("config_ssl", sid=sid, arguments={"cert": _CERT, "key": _OTHER_KEY})
    assert refused["status"] == 6320
    odd = api.act("config_ssl", sid=sid, arguments={"cert": _CERT, "KEY": _KEY, "key": _KEY})
    assert odd["status"] == 6230
    with api_engine.connect() as conn:
        logged = conn.execute(
            text("SELECT status, arguments FROM audit_log WHERE action = 'config_ssl' ORDER BY id")
        ).all()
        everything = json.dumps(
            [list(r) for r in conn.execute(text("SELECT * FROM audit_log"))], default=str
        )
    assert [s for s, _ in logged] == [0, 6320, 6230]
    first = logged[0][1]["arguments"]
    assert first["key"] == "**********"
    assert first["cert"].startswith("sha256:")
    assert first["crl"].startswith("sha256:")
    assert logged[2][1]["arguments"]["KEY"] == "**********"
    assert "PRIVATE KEY" not in everything
    assert _KEY.splitlines()[1] not in everything
