"""argon2 password hashes with a salt of their own."""

from __future__ import annotations

import pytest

from qvd.db import generate_password, hash_password, verify_password
from qvd.db.passwords import needs_rehash


def test_hash_and_verify() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "s3cret")
    assert not verify_password(stored, "s3cret ")
    assert not verify_password(stored, "")
    assert not verify_password(None, "s3cret")
    assert not verify_password("not-a-hash", "s3cret")
    assert not needs_rehash(stored)


def test_every_hash_has_its_own_salt() -> None:
    assert hash_password("same") != hash_password("same")


def test_empty_password_cannot_be_set() -> None:
    with pytest.raises(ValueError, match="empty password"):
        hash_password("")


def test_generated_passwords() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(p) == 20 and p.isalnum() for p in passwords)
