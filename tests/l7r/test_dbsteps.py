"""``retry_lost`` (the L7R's multi-transaction steps: login, node check): called again
while the connection is lost, never for a refusal; gives up after ``wait``."""

from __future__ import annotations

import psycopg
import pytest

from qvd.l7r.dbsteps import retry_lost


class Flaky:
    """Fails ``failures`` times with ``error``, then answers ``"done"``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_a_lost_connection_is_tried_again_until_it_answers() -> None:
    slept: list[float] = []
    call = Flaky(3, psycopg.OperationalError("server closed the connection unexpectedly"))
    assert retry_lost(call, wait=5, what="test", sleep=slept.append) == "done"
    assert call.calls == 4
    assert slept == [0.1, 0.2, 0.4]


def test_a_refusal_is_not_tried_again() -> None:
    call = Flaky(1, psycopg.errors.UniqueViolation("duplicate key"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        retry_lost(call, wait=5, what="test", sleep=lambda _: None)
    assert call.calls == 1


def test_no_primary_within_the_wait_raises_the_last_error() -> None:
    slept: list[float] = []
    call = Flaky(100, psycopg.OperationalError("connection refused"))
    with pytest.raises(psycopg.OperationalError):
        retry_lost(call, wait=1, what="test", sleep=slept.append)
    assert sum(slept) <= 1
    assert call.calls == len(slept) + 1
