"""The one failed-login limiter (``qvd.loginlimit``), shared by the L7R and the API."""

from __future__ import annotations

import pytest

from qvd.api.actions.auth import LoginLimiter
from qvd.api.errors import RateLimited
from qvd.l7r.auth.chain import FailureLimiter as L7rLimiter
from qvd.loginlimit import FailureLimiter, Refusal


def test_rate_limit_per_key_and_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(3, 60, lambda: now[0])
    for _ in range(3):
        assert limiter.blocked_for("user:a", "addr:1") == 0
        limiter.failed("user:a", "addr:1")
    assert limiter.blocked_for("user:a") == pytest.approx(60)
    assert limiter.blocked_for("addr:1") > 0
    assert limiter.blocked_for("user:b", "addr:2") == 0
    limiter.succeeded("user:a")
    assert limiter.blocked_for("user:a") == 0
    assert limiter.blocked_for("addr:1") > 0  # a success does not clear the address
    now[0] = 61
    assert limiter.blocked_for("addr:1") == 0


def test_both_callers_use_the_one_limiter() -> None:
    assert L7rLimiter is FailureLimiter
    assert issubclass(LoginLimiter, FailureLimiter)


def test_refusals_name_each_blocked_key_in_order() -> None:
    now = [100.0]
    limiter = FailureLimiter(2, 30, lambda: now[0])
    limiter.failed("login:b", "ip:1")
    now[0] = 110.0
    limiter.failed("login:b", "ip:1", "login:c")
    assert limiter.refusals("ip:1", "login:c", "login:b") == [
        Refusal("ip:1", 2, 20.0),
        Refusal("login:b", 2, 20.0),
    ]
    now[0] = 130.0  # the first failures left the window
    assert limiter.refusals("ip:1", "login:b") == []


def test_zero_attempts_means_no_limit() -> None:
    limiter = FailureLimiter(0, 60, lambda: 0.0)
    limiter.failed("user:a", "user:a", "user:a")
    assert limiter.blocked_for("user:a") == 0


def test_the_api_limiter_answers_qvds_rate_limit_error() -> None:
    limiter = LoginLimiter(2, 60)
    limiter.failed("ip:9", "login:x")
    limiter.check("ip:9", "login:x")
    limiter.failed("ip:9")
    with pytest.raises(RateLimited, match=r"too many failed logins \(2 in 60 s\)") as info:
        limiter.check("login:x", "ip:9")
    assert 0 < info.value.retry_after <= 61
    limiter.succeeded("login:x")
    with pytest.raises(RateLimited):  # a good password does not clear the address
        limiter.check("ip:9")


def test_keys_that_never_come_back_are_forgotten() -> None:
    now = [0.0]
    limiter = FailureLimiter(3, 60, lambda: now[0])
    for i in range(5000):  # a guessing run over ever new logins, one failure each
        now[0] = i * 0.1
        limiter.failed(f"login:guess{i}", "ip:1")
    held = len(limiter._failures)
    assert held < 2 * (60 / 0.1) + 1024, held  # about a window's worth, not all 5000
    assert limiter.blocked_for("ip:1") > 0  # the address that keeps failing is still held
