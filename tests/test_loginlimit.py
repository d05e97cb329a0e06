"""The one failed-login limiter (``qvd.loginlimit``), shared by the L7R and the API."""

from __future__ import annotations

import pytest

from qvd.api.actions.auth import LoginLimiter
from qvd.api.errors import RateLimited
from qvd.l7r.auth.chain import FailureLimiter as L7rLimiter
from qvd.loginlimit import FailureLimiter, Refusal


def test_the_delay_grows_from_one_second_doubles_and_is_capped() -> None:
    limiter = FailureLimiter(3, 60)
    assert [limiter.delay(n) for n in (0, 2, 3, 4, 5, 8, 20)] == [0, 0, 1, 2, 4, 32, 60]


def test_backoff_per_key_grows_and_decays() -> None:
    now = [0.0]
    limiter = FailureLimiter(3, 60, lambda: now[0])
    for _ in range(3):
        assert limiter.blocked_for("user:a", "addr:1") == 0
        limiter.failed("user:a", "addr:1")
    assert limiter.blocked_for("user:a") == pytest.approx(1)
    assert limiter.blocked_for("user:b", "addr:2") == 0
    limiter.failed("addr:1")
    limiter.failed("addr:1")
    assert limiter.blocked_for("addr:1") == pytest.approx(4)  # 5 failures: 2 ** (5 - 3)
    now[0] = 4.5
    assert limiter.blocked_for("addr:1") == 0  # a wait, not a lock
    limiter.failed("addr:1")  # the next failure waits longer again
    assert limiter.blocked_for("addr:1") > 4
    now[0] = 70.0  # the failures left the window
    limiter.failed("addr:1")
    assert limiter.blocked_for("addr:1") == 0


def test_a_hammered_key_waits_at_most_the_window_and_recovers() -> None:
    now = [0.0]
    limiter = FailureLimiter(5, 30, lambda: now[0])
    for _ in range(1000):
        limiter.failed("addr:x")
    assert limiter.blocked_for("addr:x") == pytest.approx(30)
    now[0] = 31  # a window later the failures are gone
    limiter.failed("addr:x")
    assert limiter.blocked_for("addr:x") == 0


def test_the_users_backoff_holds_back_only_failing_addresses() -> None:
    now = [0.0]
    limiter = FailureLimiter(3, 60, lambda: now[0])
    for _ in range(50):  # the attacker at A
        limiter.verdict("addr:A", "user:u", accepted=False)
    assert limiter.verdict("addr:A", "user:u", accepted=True) > 0  # even a right guess
    assert limiter.verdict("addr:B", "user:u", accepted=True) == 0  # the owner at B
    # a new address that guesses wrong once is failing: the user's backoff holds it
    assert limiter.verdict("addr:C", "user:u", accepted=False) == 0
    assert limiter.verdict("addr:C", "user:u", accepted=True) > 0


def test_refusals_name_each_waiting_key_in_order() -> None:
    now = [100.0]
    limiter = FailureLimiter(2, 30, lambda: now[0])
    limiter.failed("login:b", "ip:1")
    limiter.failed("login:b", "ip:1", "login:c")
    assert limiter.refusals("ip:1", "login:c", "login:b") == [
        Refusal("ip:1", 2, 1.0),
        Refusal("login:b", 2, 1.0),
    ]
    now[0] = 101.5
    assert limiter.refusals("ip:1", "login:b") == []


def test_zero_attempts_means_no_limit() -> None:
    limiter = FailureLimiter(0, 60, lambda: 0.0)
    limiter.failed("user:a", "user:a", "user:a")
    assert limiter.verdict("addr:1", "user:a", accepted=False) == 0
    assert limiter.blocked_for("user:a", "addr:1") == 0


def test_both_callers_use_the_one_limiter() -> None:
    assert L7rLimiter is FailureLimiter
    assert issubclass(LoginLimiter, FailureLimiter)


def test_the_api_limiter_answers_qvds_rate_limit_error() -> None:
    limiter = LoginLimiter(2, 60)
    limiter.failed("ip:9", "login:x")
    limiter.check("ip:9", "login:x")
    limiter.failed("ip:9")
    with pytest.raises(RateLimited, match=r"too many failed logins: try again in 1 s") as info:
        limiter.check("login:x", "ip:9")
    assert info.value.retry_after == 1
    limiter.succeeded("login:x")
    with pytest.raises(RateLimited):  # a good password does not clear the address
        limiter.check("ip:9")


def test_keys_that_never_come_back_are_forgotten() -> None:
    now = [0.0]
    limiter = FailureLimiter(3, 60, lambda: now[0])
    for i in range(5000):  # a guessing run over ever new logins, one failure each
        now[0] = i * 0.1
        limiter.failed(f"login:guess{i}", "ip:1")
    held = len(limiter._keys)
    assert held < 2 * (60 / 0.1) + 1024, held  # about a window's worth, not all 5000
    assert limiter.blocked_for("ip:1") > 0  # the address that keeps failing is still held
