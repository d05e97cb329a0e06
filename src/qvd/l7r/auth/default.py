"""``default``: the password is checked against the user's argon2 hash.

argon2 is slow on purpose (each check costs a noticeable slice of CPU time), and
clients log in again for every connection (list, then connect, then each reconnect).
A successful check is therefore remembered for a few minutes, keyed by the stored hash
itself, so that a password change ends the remembered check at once; the password is
kept only as an HMAC under a key that lives in this process's memory. Failed checks
are never remembered. A login with no hash to check (unknown, in another tenant, without
a password) costs one check against a dummy hash of the same parameters, so that the
time of the answer does not tell which logins exist. A hash made with older parameters
is replaced by one with today's once the password has been verified
(``qvd.db.passwords``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict

from sqlalchemy import text

from qvd.db.passwords import match_nothing, rehash_if_needed, verify_password
from qvd.l7r.auth.base import Attempt, AuthContext, AuthPlugin

__all__ = ["DefaultPlugin", "VerifiedCache"]


class VerifiedCache:
    """Recently verified (user, stored hash, password) triples, as HMACs."""

    def __init__(self, ttl: float = 300.0, size: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[tuple[int, str, str], tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    def known(self, who: tuple[int, str, str], password: str) -> bool:
        with self._lock:
            entry = self._entries.get(who)
            if entry is None or entry[1] < time.monotonic():
                return False
            return hmac.compare_digest(entry[0], self._mac(password))

    def remember(self, who: tuple[int, str, str], password: str) -> None:
        with self._lock:
            self._entries[who] = (self._mac(password), time.monotonic() + self._ttl)
            self._entries.move_to_end(who)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class DefaultPlugin(AuthPlugin):
    name = "default"
    verified = VerifiedCache()

    def authenticate(self, ctx: AuthContext, attempt: Attempt) -> bool:
        stored = ctx.conn.execute(
            text("SELECT password FROM users WHERE tenant_id = :t AND login = :l"),
            {"t": attempt.tenant_id, "l": attempt.login},
        ).scalar()
        if not stored or not attempt.password:
            return match_nothing(attempt.password)
        who = (int(attempt.tenant_id), attempt.login, str(stored))
        if self.verified.known(who, attempt.password):
            return True
        if not verify_password(stored, attempt.password):
            return False
        fresh = rehash_if_needed(str(stored), attempt.password)
        if fresh is not None:  # committed with the login; skipped if changed meanwhile
            ctx.conn.execute(
                text(
                    "UPDATE users SET password = :new "
                    "WHERE tenant_id = :t AND login = :l AND password = :old"
                ),
                {"new": fresh, "t": attempt.tenant_id, "l": attempt.login, "old": stored},
            )
            who = (who[0], who[1], fresh)
        self.verified.remember(who, attempt.password)
        return True
