"""``totp``: the password ends with an N-digit RFC 6238 code (ASCII digits only); the
user's secret is the user property ``l7r.auth.plugin.totp.secret32`` (base32)."""

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

__all__ = ["SECRET_PROPERTY", "TotpPlugin", "totp_code"]

SECRET_PROPERTY = "l7r.auth.plugin.totp.secret32"  # noqa: S105 - a property name


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
            codes = {totp_code(str(secret), now + d, digits) for d in range(-leeway, leeway + 1)}
        except (binascii.Error, ValueError):
            raise Unauthorized(
                "the one-time-code secret of this user is not valid base32"
            ) from None
        if attempt.otp is None or not any(hmac.compare_digest(attempt.otp, c) for c in codes):
            raise Unauthorized("wrong one-time code")
