"""The ``totp`` plugin (password followed by an RFC 6238 code): the code itself, and
through the real L7R."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from sqlalchemy import Engine, text

from qvd.l7r.auth.totp import totp_code
from tests.l7r.conftest import PASSWORD, Lab
from tests.l7r.ldap_fixture import (
    Directory,
    add_tenant,
    add_user,
    basic,
    get,
    ldap_settings,
    refused,
    set_config,
)

SECRET32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_totp_rfc6238_vector() -> None:
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp_code(secret, 59 // 30, 8) == "94287082"
    assert totp_code(secret, 1111111109 // 30, 8) == "07081804"


# ---- an RFC 6238 reference, written apart from qvd.l7r.auth.totp ----------------------------
def rfc6238(secret32: str, at: float, *, step: int = 30, digits: int = 6) -> str:
    key = base64.b32decode(secret32 + "=" * (-len(secret32) % 8))
    mac = hmac.new(key, int(at // step).to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    number = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(number % 10**digits).rjust(digits, "0")


def test_reference_matches_rfc6238_vectors() -> None:
    secret = base64.b32encode(b"12345678901234567890").decode()  # RFC 6238 appendix B, SHA-1
    assert rfc6238(secret, 59, digits=8) == "94287082"
    assert rfc6238(secret, 1111111109, digits=8) == "07081804"
    assert rfc6238(secret, 1234567890, digits=8) == "89005924"
    assert rfc6238(secret, 20000000000, digits=8) == "65353130"


def current_codes(secret32: str) -> tuple[str, str, str]:
    """(code now, code of the previous step, a code no step within the leeway accepts);
    waits out the last 1.5 s of a step so the L7R sees the same step as the test."""
    left = 30 - time.time() % 30
    if left < 1.5:
        time.sleep(left + 0.05)
    now = time.time()
    near = {rfc6238(secret32, now + d * 30) for d in (-2, -1, 0, 1, 2)}
    wrong = next(c for c in (f"{n:06d}" for n in range(1000, 10**6, 7919)) if c not in near)
    return rfc6238(secret32, now), rfc6238(secret32, now - 30), wrong


def set_totp_secret(engine: Engine, tenant_id: int, user_id: int, secret32: str) -> None:
    with engine.begin() as conn:
        prop = conn.execute(
            text(
                "INSERT INTO properties_list (key, tenant_id) VALUES (:k, :t) "
                "ON CONFLICT (key, tenant_id) DO UPDATE SET key = EXCLUDED.key RETURNING id"
            ),
            {"k": "l7r.auth.plugin.totp.secret32", "t": tenant_id},
        ).scalar_one()
        assignment = conn.execute(
            text(
                "INSERT INTO qvd_object_properties_list (property_id, qvd_object) "
                "VALUES (:p, 'user') ON CONFLICT (property_id, qvd_object) "
                "DO UPDATE SET qvd_object = EXCLUDED.qvd_object RETURNING id"
            ),
            {"p": prop},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO user_properties (user_id, property_id, value) VALUES (:u, :p, :v)"),
            {"u": user_id, "p": assignment, "v": secret32},
        )


# ---- totp ------------------------------------------------------------------------------------
def test_totp_code_after_the_password(lab: Lab) -> None:
    set_config(lab.engine, 1, {"l7r.auth.plugins": "totp"})
    set_totp_secret(lab.engine, 1, lab.seed.user_id, SECRET32)
    now, previous, wrong = current_codes(SECRET32)
    # the previous period's code is still accepted (leeway) while it is the latest used
    assert get(lab, "/qvd/list_of_vm", basic("alice", PASSWORD + previous)).status == 200
    assert get(lab, "/qvd/list_of_vm", basic("alice", PASSWORD + now)).status == 200
    refused(get(lab, "/qvd/list_of_vm", basic("alice", PASSWORD + previous)), b"already used")
    refused(get(lab, "/qvd/list_of_vm", basic("alice", PASSWORD + wrong)), b"wrong one-time code")
    refused(get(lab, "/qvd/list_of_vm", basic("alice", PASSWORD)), b"6-digit one-time code")
    refused(get(lab, "/qvd/list_of_vm", basic("alice", "nope" + now)), b"wrong login")
    # non-ASCII digits pass str.isdigit but are no code (and broke hmac.compare_digest)
    refused(get(lab, "/qvd/list_of_vm", basic("alice", PASSWORD + "١٢٣٤٥٦")), b"6-digit")
    # bob has no secret: the right password and any code are not enough
    refused(get(lab, "/qvd/list_of_vm", basic("bob", PASSWORD + now)), b"no one-time-code")


def test_totp_bad_secret_is_a_401(lab: Lab) -> None:
    set_config(lab.engine, 1, {"l7r.auth.plugins": "totp"})
    set_totp_secret(lab.engine, 1, lab.seed.user_id, "not base32!")
    refused(get(lab, "/qvd/list_of_vm", basic("alice", PASSWORD + "123456")), b"not valid base32")


def test_totp_with_ldap(lab: Lab, slapd: Directory) -> None:
    tenant_id = add_tenant(lab.engine, "acme")
    alice = add_user(lab.engine, tenant_id, "alice")
    set_config(
        lab.engine, tenant_id, {"l7r.auth.plugins": "totp,ldap", **ldap_settings(slapd, "direct")}
    )
    set_totp_secret(lab.engine, tenant_id, alice, SECRET32)
    now, _, wrong = current_codes(SECRET32)
    assert get(lab, "/qvd/list_of_vm", basic("alice@acme", "alicepw" + now)).status == 200
    refused(get(lab, "/qvd/list_of_vm", basic("alice@acme", "alicepw" + wrong)), b"wrong one")
    refused(get(lab, "/qvd/list_of_vm", basic("alice@acme", "alicepw")), b"one-time code")
