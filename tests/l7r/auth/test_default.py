"""The ``default`` plugin's cache of verified passwords."""

from __future__ import annotations


def test_verified_passwords_are_remembered_until_the_hash_changes() -> None:
    from qvd.l7r.auth.default import VerifiedCache

    cache = VerifiedCache(ttl=60)
    who = (1, "alice", "$argon2id$old")
    assert not cache.known(who, "pw")
    cache.remember(who, "pw")
    assert cache.known(who, "pw")
    assert not cache.known(who, "other")
    assert not cache.known((1, "alice", "$argon2id$new"), "pw")  # password changed
    expired = VerifiedCache(ttl=-1)
    expired.remember(who, "pw")
    assert not expired.known(who, "pw")
