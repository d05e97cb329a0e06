"""Join tokens: what ``qvd node token`` prints and ``qvd node join`` consumes (pure parts).

A token is one opaque string, ``qvdjoin1.`` + base64url(JSON), that carries what a new
node needs: where the database is (hosts, port, database name), a **role of its own**
(``qvd_node_<16 hex>``, made for this token), the secret, and the fingerprint of the
fleet's L7R certificate when ``ssl_configs`` holds one (the joining node checks that
what it reads from the database is what the token's maker saw).

Why a role per token: the token has to carry credentials, so a stolen token must be
worthless once used or expired. The role's password is derived from the secret; the
role is ``VALID UNTIL`` the token's expiry (PostgreSQL refuses its login after that);
joining consumes the token in the database (``used_at``, once, atomically) and, in the
same transaction, gives the role a new password only the node knows (a SCRAM verifier
computed here: the new password never travels) and lifts its expiry. The database
keeps only the secret's SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ROLE_PREFIX",
    "TOKEN_PREFIX",
    "JoinToken",
    "JoinTokenError",
    "decode_token",
    "encode_token",
    "new_secret",
    "parse_ttl",
    "role_of",
    "scram_verifier",
    "secret_password",
    "secret_sha256",
]

TOKEN_PREFIX = "qvdjoin1."  # noqa: S105 (a marker, not a secret)
ROLE_PREFIX = "qvd_node_"
_MAX_TOKEN = 16 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TTL = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = dt.timedelta(days=7)


class JoinTokenError(ValueError):
    """A token that cannot be read (the message says why, never the token)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinToken:
    """What a token carries."""

    secret: str  # base64url, 32 random bytes
    db_host: str  # libpq host list ("a,b") or a socket directory
    db_port: str  # libpq port list
    db_name: str
    expiration: dt.datetime
    host_name: str | None = None  # the only name this token registers, when set
    l7r_cert_sha256: str | None = None  # the fleet's L7R certificate (ssl_configs)

    @property
    def sha256(self) -> str:
        return secret_sha256(self.secret)

    @property
    def role(self) -> str:
        return role_of(self.sha256)

    @property
    def password(self) -> str:
        return secret_password(self.secret)

    def connection_params(self) -> dict[str, str]:
        """libpq parameters of the token's role (password included: keep them private)."""
        return {
            "host": self.db_host,
            "port": self.db_port,
            "dbname": self.db_name,
            "user": self.role,
            "password": self.password,
            "application_name": "qvd-node-join",
        }


def new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def secret_sha256(secret: str) -> str:
    """What the database keeps of a token (``node_join_tokens.token_sha256``)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def role_of(sha256: str) -> str:
    """The PostgreSQL role a token's node logs in as."""
    if not _HEX64.fullmatch(sha256):
        raise JoinTokenError("a token hash is 64 lower-case hex digits")
    return ROLE_PREFIX + sha256[:16]


def secret_password(secret: str) -> str:
    """The role's password while the token is unused (derived: one secret to carry)."""
    digest = hmac.new(secret.encode(), b"qvd node join: database password", "sha256").digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def scram_verifier(password: str, *, iterations: int = 4096, salt: bytes | None = None) -> str:
    """PostgreSQL's stored form of ``password`` (SCRAM-SHA-256, RFC 5802/7677): given to
    ``ALTER ROLE … PASSWORD`` so that the password itself never reaches the server
    (nor its statement log). ASCII passwords only (SASLprep is then the identity)."""
    if not password.isascii() or not password.isprintable():
        raise ValueError("a generated password is printable ASCII")
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def parse_ttl(text: str) -> dt.timedelta:
    """``30m``, ``1h``, ``2d`` …: how long a token stays valid (at most 7 days)."""
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise JoinTokenError(f"--ttl {text!r}: write a number and a unit (s, m, h, d), e.g. 1h")
    ttl = dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if ttl <= dt.timedelta(0) or ttl > MAX_TTL:
        raise JoinTokenError(f"--ttl {text!r}: between 1 s and 7 days")
    return ttl


def encode_token(token: JoinToken) -> str:
    body = {
        "v": 1,
        "secret": token.secret,
        "db": {"host": token.db_host, "port": token.db_port, "dbname": token.db_name},
        "exp": token.expiration.astimezone(dt.UTC).isoformat(),
        "host": token.host_name,
        "l7r_cert_sha256": token.l7r_cert_sha256,
    }
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _text(body: Mapping[str, object], key: str, *, optional: bool = False) -> str | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise JoinTokenError(f"the join token's {key!r} is missing or not text")
    if any(not ch.isprintable() for ch in value):
        raise JoinTokenError(f"the join token's {key!r} has control characters")
    return value


def decode_token(text: str) -> JoinToken:
    """Read a token; a damaged or foreign string is a JoinTokenError (never echoed)."""
    text = text.strip()
    if len(text) > _MAX_TOKEN or not text.startswith(TOKEN_PREFIX):
        raise JoinTokenError(
            f"not a join token (it starts with {TOKEN_PREFIX!r}: copy all of what "
            "`qvd node token` printed)"
        )
    payload = text[len(TOKEN_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError):
        raise JoinTokenError("the join token is damaged (not base64url JSON)") from None
    if not isinstance(body, dict) or body.get("v") != 1:
        raise JoinTokenError("the join token is of an unknown version")
    db = body.get("db")
    if not isinstance(db, dict):
        raise JoinTokenError("the join token does not say where the database is")
    try:
        expiration = dt.datetime.fromisoformat(str(_text(body, "exp")))
    except ValueError:
        raise JoinTokenError("the join token's expiry is not a date") from None
    if expiration.tzinfo is None:
        raise JoinTokenError("the join token's expiry has no time zone")
    cert = _text(body, "l7r_cert_sha256", optional=True)
    if cert is not None and not _HEX64.fullmatch(cert):
        raise JoinTokenError("the join token's certificate fingerprint is not SHA-256 hex")
    secret = str(_text(body, "secret"))
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", secret):
        raise JoinTokenError("the join token's secret is malformed")
    return JoinToken(
        secret=secret,
        db_host=str(_text(db, "host")),
        db_port=str(_text(db, "port")),
        db_name=str(_text(db, "dbname")),
        expiration=expiration,
        host_name=_text(body, "host", optional=True),
        l7r_cert_sha256=cert,
    )
