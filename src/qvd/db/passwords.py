"""Password hashing: argon2id with a per-password salt (never QVD's global salt).

Used for administrators (API) and users (L7R ``default`` plugin). A stored value of
None means the account has no password and cannot log in with one.

Parameters: the OWASP Password Storage Cheat Sheet's argon2id floor (m = 19 MiB, t = 2,
p = 1): about a fifth of the CPU time of argon2-cffi's defaults (64 MiB, t = 3, p = 4),
so a login storm is served several times faster, and still memory-hard. A hash made
with other parameters still verifies; ``needs_rehash`` tells the login paths to store
a new one (``rehash_if_needed``).
"""

from __future__ import annotations

import functools
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "ARGON2_MEMORY_KIB",
    "ARGON2_PARALLELISM",
    "ARGON2_TIME_COST",
    "generate_password",
    "hash_password",
    "match_nothing",
    "needs_rehash",
    "rehash_if_needed",
    "verify_password",
]

ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)  # argon2id
_ALPHABET = string.ascii_letters + string.digits


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("an empty password cannot be set")
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True if ``password`` matches the stored hash; False for no hash or an empty try."""
    if not stored or not password:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """A hash of today's parameters that no password matches (made once per process)."""
    return hash_password(secrets.token_urlsafe(32))


def match_nothing(password: str) -> bool:
    """Spend what a wrong password costs against a real hash, and answer False: for a
    login with no hash to check (an unknown user, one in another tenant, one without a
    password), so that the answer's time does not tell which logins exist."""
    verify_password(_dummy_hash(), password or "-")
    return False


def needs_rehash(stored: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def rehash_if_needed(stored: str, password: str) -> str | None:
    """A new hash of ``password`` (already verified against ``stored``) when ``stored``
    was made with other parameters than today's; None when it is current."""
    return hash_password(password) if needs_rehash(stored) else None


def generate_password(length: int = 20) -> str:
    """A random password of letters and digits (easy to copy from a terminal)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
