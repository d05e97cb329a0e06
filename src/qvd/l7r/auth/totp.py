"""``totp``: the password ends with an N-digit RFC 6238 code (ASCII digits only); the
user's secret is the user property ``l7r.auth.plugin.totp.secret32`` (base32).

A code is used once (RFC 6238 §5.2): ``user_totp_uses`` keeps the last step each user
logged in with, and a code of that step or an earlier one is refused, with one
exception: the QVD client sends the same credentials for ``list_of_vm`` and then
``connect_to_vm`` within seconds, so the same address may use the same code once more
within ``REUSE_WINDOW`` seconds. One atomic upsert decides, so two concurrent logins
cannot both spend one code."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import time
from collections.abc import Callable

from sqlalchemy import text

from qvd.l7r.auth.base import Attempt, AuthContext, AuthPlugin
from qvd.l7r.errors import Unauthorized

__all__ = ["REUSE_WINDOW", "SECRET_PROPERTY", "TotpPlugin", "totp_code"]

SECRET_PROPERTY = "l7r.auth.plugin.totp.secret32"  # noqa: S105 - a property name
REUSE_WINDOW = 30  # seconds in which the same address may use a code a second time

_SPEND = text(
    "INSERT INTO user_totp_uses AS t (user_id, step, address) "
    "SELECT u.id, :s, :a FROM users u WHERE u.tenant_id = :tn AND u.login = :l "
    "ON CONFLICT (user_id) DO UPDATE SET "
    "  reuses = CASE WHEN t.step = EXCLUDED.step THEN t.reuses + 1 ELSE 0 END, "
    "  used_at = CASE WHEN t.step = EXCLUDED.step THEN t.used_at ELSE now() END, "
    "  step = EXCLUDED.step, address = EXCLUDED.address "
    "WHERE t.step < EXCLUDED.step "
    "   OR (t.step = EXCLUDED.step AND t.address = EXCLUDED.address AND t.reuses = 0 "
    "       AND t.used_at > now() - make_interval(secs => :w)) "
    "RETURNING 1"
)


def totp_code(secret32: str, counter: int, digits: int = 6) -> str:
    """The HOTP value of ``counter`` (RFC 4226) for a base32 secret."""
    padded = secret32.strip().replace(" ", "").upper()
    key = base64.b32decode(padded + "=" * (-len(padded) % 8))
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


class TotpPlugin(AuthPlugin):
    name = "totp"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def split_password(self, ctx: AuthContext, attempt: Attempt) -> None:
        size = ctx.config.get_int("l7r.auth.plugin.totp.token_size", attempt.tenant_id)
        code = attempt.password[-size:]
        if len(attempt.password) <= size or not (code.isascii() and code.isdigit()):
            raise Unauthorized(f"the password must end with the {size}-digit one-time code")
        attempt.password, attempt.otp = attempt.password[:-size], attempt.password[-size:]

    def after_authenticate(self, ctx: AuthContext, attempt: Attempt) -> None:
        secret = ctx.conn.execute(
            text(
                "SELECT up.value FROM user_properties up "
                "JOIN qvd_object_properties_list a ON a.id = up.property_id "
                "JOIN properties_list p ON p.id = a.property_id "
                "JOIN users u ON u.id = up.user_id "
                "WHERE u.tenant_id = :t AND u.login = :l AND p.key = :k"
            ),
            {"t": attempt.tenant_id, "l": attempt.login, "k": SECRET_PROPERTY},
        ).scalar()
        if not secret:
            raise Unauthorized("no one-time-code secret is set for this user")
        tenant = attempt.tenant_id
        interval = ctx.config.get_int("l7r.auth.plugin.totp.interval", tenant)
        t0 = ctx.config.get_int("l7r.auth.plugin.totp.t0", tenant)
        leeway = ctx.config.get_int("l7r.auth.plugin.totp.leeway", tenant)
        digits = ctx.config.get_int("l7r.auth.plugin.totp.token_size", tenant)
        now = int((self._clock() - t0) // interval)
        try:
            codes = {
                now + d: totp_code(str(secret), now + d, digits) for d in range(-leeway, leeway + 1)
            }
        except (binascii.Error, ValueError):
            raise Unauthorized(
                "the one-time-code secret of this user is not valid base32"
            ) from None
        otp = attempt.otp or ""
        steps = [step for step, code in codes.items() if hmac.compare_digest(otp, code)]
        if attempt.otp is None or not steps:
            raise Unauthorized("wrong one-time code")
        spent = ctx.conn.execute(
            _SPEND,
            {"s": max(steps), "a": attempt.address[:45], "tn": attempt.tenant_id,
             "l": attempt.login, "w": REUSE_WINDOW},
        ).first()  # fmt: skip
        if spent is None:
            raise Unauthorized("this one-time code was already used: wait for the next one")
