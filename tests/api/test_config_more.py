"""``config_wat_get_list`` / ``config_wat_update`` (a tenant's WAT language and page
size) and ``config_ssl`` (the L7R's TLS material as PEM text, superadmins only, the
key never in the audit log)."""

from __future__ import annotations

import datetime as dt
import json
import time
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
from tests.api.conftest import PASSWORD, Api, World, api_config

NOW = dt.datetime.now(dt.UTC)


def _wat(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    return api.act("config_wat_get_list", sid=sid, **body)


def test_each_admin_reads_and_changes_its_own_tenants_wat_settings(
    api: Api, world: World, api_engine: Engine
) -> None:
    a, b = world.tenants["A"], world.tenants["B"]
    sid = api.login("adminA", "tenantA")
    assert _wat(api, sid)["rows"] == [{"tenant_id": a, "language": "auto", "block": 10}]
    r = api.act("config_wat_update", sid=sid, arguments={"language": "es", "block": 25})
    assert r["status"] == 0, r
    assert _wat(api, sid)["rows"] == [{"tenant_id": a, "language": "es", "block": 25}]
    assert _wat(api, sid, fields=["block"])["rows"] == [{"block": 25}]
    r = api.act("config_wat_update", sid=sid, arguments={"block": "50"})  # CLI strings
    assert (r["status"], _wat(api, sid)["rows"][0]["block"]) == (0, 50)

    # tenant B stays out of reach
    assert _wat(api, sid, filters={"tenant_id": b})["status"] == 4220
    assert _wat(api, sid, filters={"-or": [{"tenant_id": b}, {"block": 10}]})["status"] == 4220
    r = api.act("config_wat_update", sid=sid, arguments={"language": "en", "tenant_id": b})
    assert r["status"] == 4230, r

    root = api.login("root")
    assert _wat(api, root)["rows"] == [{"tenant_id": 0, "language": "auto", "block": 10}]
    assert _wat(api, root, filters={"tenant_id": b})["rows"] == [
        {"tenant_id": b, "language": "auto", "block": 10}
    ]
    both = _wat(api, root, filters={"tenant_id": [a, b, -1]}, fields=["tenant_id"])
    assert both["rows"] == [{"tenant_id": a}, {"tenant_id": b}]
    r = api.act("config_wat_update", sid=root, arguments={"block": 100, "tenant_id": b})
    assert r["status"] == 0, r
    assert _wat(api, root, filters={"tenant_id": b})["rows"][0]["block"] == 100
    with api_engine.connect() as conn:
        assert conn.execute(
            text("SELECT language, block FROM tenants WHERE id = :a"), {"a": a}
        ).one() == ("es", 50)
        logged = conn.execute(
            text(
                "SELECT object_id, object_name, status FROM audit_log "
                "WHERE action = 'config_wat_update' ORDER BY id"
            )
        ).all()
    assert [tuple(x) for x in logged] == [
        (a, "tenantA", 0),
        (a, "tenantA", 0),
        (None, None, 4230),
        (b, "tenantB", 0),
    ]


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        ({"language": "xx"}, 6320, "language must be one of"),
        ({"block": 0}, 6320, "1..10000"),
        ({"block": 10001}, 6320, "1..10000"),
        ({"block": "many"}, 6320, "'block'"),
        ({}, 6240, "nothing to change"),
        ({"name": "x"}, 6230, "'name'"),
    ],
)
def test_wat_update_refuses_bad_values(
    args: dict[str, Any], status: int, words: str, shared: tuple[Api, World, Engine]
) -> None:
    api, _world, _engine = shared
    r = api.act("config_wat_update", sid=api.login("adminA", "tenantA"), arguments=args)
    assert (r["status"], words in r["message"]) == (status, True), r


def test_superadmins_name_existing_tenants_and_acls_apply(api: Api, world: World) -> None:
    root = api.login("root")
    for tenant_id in (-1, 0xDEAD):
        r = api.act("config_wat_update", sid=root, arguments={"block": 5, "tenant_id": tenant_id})
        assert r["status"] == 7110, r
    assert api.act("config_wat_update", sid=root, arguments={"block": 5})["status"] == 0
    assert _wat(api, root)["rows"][0]["block"] == 5
    sid = api.login("adminA", "tenantA")
    r = api.act("role_create", sid=sid, arguments={"name": "viewer", "__acls__": ["vm.see-main."]})
    assert r["status"] == 0, r
    r = api.act(
        "administrator_create",
        sid=sid,
        arguments={"name": "viewer", "password": PASSWORD, "__roles__": ["viewer"]},
    )
    assert r["status"] == 0, r
    viewer = api.login("viewer", "tenantA")
    assert _wat(api, viewer)["status"] == 4210
    assert api.act("config_wat_update", sid=viewer, arguments={"block": 5})["status"] == 4210
    assert api.act("config_ssl", sid=viewer, arguments={})["status"] == 4210


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


def test_wat_and_ssl_over_rest(api: Api, world: World, api_engine: Engine) -> None:
    h = api.headers("adminA", "tenantA")
    r = api.client.put("/api/v1/config/wat", json={"language": "en", "block": 30}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"tenant_id": world.tenants["A"], "language": "en", "block": 30}
    assert api.client.get("/api/v1/config/wat", headers=h).json()["rows"] == [r.json()]
    assert api.client.get("/api/v1/config/wat?tenant_id=1", headers=h).status_code == 403
    r = api.client.put("/api/v1/config/wat", json={"block": 30, "tenant_id": 1}, headers=h)
    assert r.status_code == 403
    assert api.client.put("/api/v1/config/wat", json={}, headers=h).status_code == 400
    r = api.client.put("/api/v1/config/ssl", json={"cert": _CERT, "key": _KEY}, headers=h)
    assert r.status_code == 403

    root = api.headers("root")
    b = world.tenants["B"]
    r = api.client.put("/api/v1/config/wat", json={"language": "es", "tenant_id": b}, headers=root)
    assert r.json() == {"tenant_id": b, "language": "es", "block": 10}
    assert api.client.get(f"/api/v1/config/wat?tenant_id={b}", headers=root).json()["total"] == 1
    bad = api.client.put(
        "/api/v1/config/ssl", json={"cert": _CERT, "key": _OTHER_KEY}, headers=root
    )
    assert (bad.status_code, bad.json()["status"]) == (400, 6320)
    r = api.client.put("/api/v1/config/ssl", json={"cert": _CERT, "key": _KEY}, headers=root)
    assert r.status_code == 204, r.text
    assert _ssl_rows(api_engine)["l7r.ssl.cert"] == _CERT


def test_database_config_rows_apply_to_the_api(
    api: Api, world: World, config: Any, api_engine: Engine
) -> None:
    """config_set changes what the API does: at once in the process that set it, and
    within a few seconds in another API process over the same database."""
    from qvd.api import create_app
    from tests.api.asgi import asgi_client

    root = api.login("root")
    b = world.tenants["B"]
    r = api.act("user_create", sid=root, arguments={"name": "Ann", "password": "x", "tenant_id": b})
    assert r["status"] == 0, r
    with asgi_client(create_app(config, api_engine)) as other_client:
        other = Api(other_client)
        other_root = other.login("root")
        assert other.act("config_get", sid=other_root)["status"] == 0  # reads the rows now
        r = api.act(
            "config_set", sid=root,
            arguments={"key": "model.user.login.case-sensitive", "value": "1", "tenant_id": b},
        )  # fmt: skip
        assert r["status"] == 0, r
        r = api.act(
            "user_create", sid=root, arguments={"name": "Bob", "password": "x", "tenant_id": b}
        )
        assert r["status"] == 0, r
        names = {
            u["name"] for u in api.act("user_get_list", sid=root, filters={"tenant_id": b})["rows"]
        }
        assert {"ann", "Bob"} <= names
        deadline = time.monotonic() + 6
        created = None
        while time.monotonic() < deadline:
            r = other.act("user_create", sid=other_root,
                          arguments={"name": "Cy", "password": "x", "tenant_id": b})  # fmt: skip
            assert r["status"] in (0, 7200), r
            rows = other.act("user_get_list", sid=other_root,
                             filters={"tenant_id": b, "name": "Cy"})["rows"]  # fmt: skip
            if rows:
                created = rows[0]["name"]
                break
            other.act("user_delete", sid=other_root, filters={"tenant_id": b, "name": "cy"})
            time.sleep(0.5)
        assert created == "Cy"
