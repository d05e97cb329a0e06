"""Password hashing: argon2id with a per-password salt (never QVD's global salt).

Used for administrators (API) and users (L7R ``default`` plugin). A stored value of
None means the account has no password and cannot log in with one.
"""

from __future__ import annotations

import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["generate_password", "hash_password", "needs_rehash", "verify_password"]

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
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


def needs_rehash(stored: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def generate_password(length: int = 20) -> str:
    """A random password of letters and digits (easy to copy from a terminal)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
