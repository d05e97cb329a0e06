"""The join token's own format (pure): what it carries, what a damaged one says."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

import pytest

from qvd.node.jointoken import (
    JoinToken,
    JoinTokenError,
    decode_token,
    encode_token,
    new_secret,
    parse_ttl,
    scram_verifier,
)


def _token(**extra: object) -> JoinToken:
    values: dict[str, object] = {
        "secret": new_secret(), "db_host": "db1,db2", "db_port": "5432,5433",
        "db_name": "qvd", "expiration": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    }  # fmt: skip
    values.update(extra)
    return JoinToken(**values)  # type: ignore[arg-type]


def test_round_trip_and_derived_names() -> None:
    token = _token(host_name="node-b", l7r_cert_sha256="ab" * 32)
    back = decode_token(encode_token(token))
    assert back == token
    assert back.role == "qvd_node_" + hashlib.sha256(token.secret.encode()).hexdigest()[:16]
    assert back.password != token.secret  # derived, not the secret itself
    params = back.connection_params()
    assert params["host"] == "db1,db2"
    assert params["user"] == back.role


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("hello", "not a join token"),
        ("qvdjoin1.!!!", "damaged"),
        ("qvdjoin1." + base64.urlsafe_b64encode(b'{"v": 2}').decode(), "unknown version"),
    ],
)
def test_a_damaged_token_says_why_without_echoing_it(text: str, reason: str) -> None:
    with pytest.raises(JoinTokenError, match=reason) as caught:
        decode_token(text)
    assert text not in str(caught.value)


def test_ttl_bounds() -> None:
    assert parse_ttl("90m") == dt.timedelta(minutes=90)
    for bad in ("0s", "8d", "1 hour", "-1h"):
        with pytest.raises(JoinTokenError):
            parse_ttl(bad)


def test_scram_verifier_matches_rfc_7677_derivation() -> None:
    salt = b"0123456789abcdef"
    verifier = scram_verifier("pencil", salt=salt, iterations=4096)
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    assert verifier.startswith("SCRAM-SHA-256$4096:" + base64.b64encode(salt).decode() + "$")
    assert verifier.endswith(":" + base64.b64encode(server_key).decode())
