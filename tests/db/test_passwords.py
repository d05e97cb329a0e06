"""argon2 password hashes with a salt of their own."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from qvd.db import generate_password, hash_password, verify_password
from qvd.db.passwords import needs_rehash, rehash_if_needed


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


def test_new_hashes_use_the_owasp_argon2id_floor() -> None:
    params = extract_parameters(hash_password("s3cret"))
    # OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (
        Type.ID,
        19 * 1024,
        2,
        1,
    )


def test_an_older_hash_still_verifies_and_is_renewed() -> None:
    old = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash("s3cret")
    assert verify_password(old, "s3cret")
    assert needs_rehash(old)
    fresh = rehash_if_needed(old, "s3cret")
    assert fresh is not None
    assert fresh != old
    assert verify_password(fresh, "s3cret")
    assert not needs_rehash(fresh)
    assert rehash_if_needed(fresh, "s3cret") is None
