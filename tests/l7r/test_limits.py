"""``ConnectGate`` (the caps on connects in flight) and ``FairPool`` (logins taking
turns), alone: real threads, no server."""

from __future__ import annotations

import threading

import pytest

from qvd.config import Config
from qvd.l7r.errors import Busy
from qvd.l7r.limits import ConnectGate, ConnectLimits, FairPool
from qvd.l7r.wire import basic_login

WAIT = 30.0  # a generous event wait, never a speed threshold


def test_per_address_cap_counts_before_the_user_is_known() -> None:
    gate = ConnectGate(ConnectLimits(per_user=2, per_address=3, workers=8))
    tickets = [gate.admit("10.1.1.1") for _ in range(3)]
    with pytest.raises(Busy) as refused:
        gate.admit("10.1.1.1")
    assert refused.value.status == 503
    assert "from your address" in refused.value.message
    assert "the limit is 3" in refused.value.message
    assert "retry later" in refused.value.message
    gate.admit("10.2.2.2").release()  # another address is not affected
    tickets[0].release()
    tickets[0].release()  # giving back twice counts once
    gate.admit("10.1.1.1")
    assert gate.in_flight() == (3, 0, 0)


def test_per_user_cap_and_its_reason() -> None:
    gate = ConnectGate(ConnectLimits(per_user=2, per_address=50, workers=8))
    held = []
    for _ in range(2):
        ticket = gate.admit("10.0.0.1")
        ticket.bind_user(7, "alice")
        held.append(ticket)
    refused_ticket = gate.admit("10.0.0.9")
    with pytest.raises(Busy) as refused:
        refused_ticket.bind_user(7, "alice")
    assert "alice already has 2 connect or stop requests" in refused.value.message
    refused_ticket.release()
    other = gate.admit("10.0.0.1")
    other.bind_user(8, "bob")  # another user still gets in
    assert gate.in_flight() == (3, 3, 2)
    held[0].release()
    again = gate.admit("10.0.0.1")
    again.bind_user(7, "alice")
    assert gate.in_flight() == (3, 3, 2)


def test_node_cap_is_the_worker_count() -> None:
    gate = ConnectGate(ConnectLimits(per_user=1, per_address=50, workers=2))
    for user in (1, 2):
        gate.admit("a").bind_user(user, f"u{user}")
    ticket = gate.admit("a")
    with pytest.raises(Busy) as refused:
        ticket.bind_user(3, "u3")
    assert "this node is serving 2" in refused.value.message


def test_limits_refuse_a_per_user_cap_near_the_pool_size() -> None:
    with pytest.raises(ValueError, match="at most half"):
        ConnectLimits(per_user=20, per_address=20, workers=32)
    with pytest.raises(ValueError, match="at least 1"):
        ConnectLimits(per_user=0)
    defaults = ConnectLimits.from_config(Config())
    assert defaults.per_user * 2 <= defaults.workers
    assert defaults.per_address < defaults.workers


def test_tickets_released_from_many_threads_leave_nothing_counted() -> None:
    gate = ConnectGate(ConnectLimits(per_user=100, per_address=1000, workers=200))
    tickets = [gate.admit(f"10.0.0.{i % 5}") for i in range(400)]
    for i, ticket in enumerate(tickets[:150]):
        ticket.bind_user(i % 7, "u")
    threads = [
        threading.Thread(target=lambda part=part: [t.release() for t in part])
        for part in (tickets[0::4], tickets[1::4], tickets[2::4], tickets[3::4])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert gate.in_flight() == (0, 0, 0)


def test_fair_pool_serves_keys_in_turn() -> None:
    """One key's ten queued jobs do not make a later key wait for all of them."""
    pool = FairPool(1, "test-fair")
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = pool.submit("x", gate.wait, WAIT)
        flood = [pool.submit("flood", order.append, f"flood{i}") for i in range(10)]
        late = pool.submit("late", order.append, "late")
        gate.set()
        assert blocker.result(WAIT)
        late.result(WAIT)
        for future in flood:
            future.result(WAIT)
    finally:
        pool.shutdown()
    assert order.index("late") <= 1, order
    assert [o for o in order if o != "late"] == [f"flood{i}" for i in range(10)]


def test_fair_pool_keeps_arrival_order_across_distinct_keys_and_passes_errors() -> None:
    pool = FairPool(1, "test-fair")
    gate = threading.Event()
    order: list[int] = []
    try:
        pool.submit("first", gate.wait, WAIT)
        jobs = [pool.submit(f"user{i}", order.append, i) for i in range(20)]
        failing = pool.submit("bad", int, "not a number")
        gate.set()
        for job in jobs:
            job.result(WAIT)
        with pytest.raises(ValueError, match="invalid literal"):
            failing.result(WAIT)
    finally:
        pool.shutdown()
    assert order == list(range(20))


def test_fair_pool_shutdown_cancels_what_waits() -> None:
    pool = FairPool(1, "test-fair")
    gate, started = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait(WAIT)

    running = pool.submit("a", hold)
    assert started.wait(WAIT)
    queued = pool.submit("b", int, "1")
    pool.shutdown()
    assert queued.cancelled()
    gate.set()
    assert running.result(WAIT)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit("c", int, "1")


@pytest.mark.parametrize(
    ("header", "login"),
    [
        ("Basic YWxpY2U6c2VjcmV0", "alice"),  # alice:secret
        ("basic  Ym9iQHQyOnB3OmV4dHJh ", "bob@t2"),  # bob@t2:pw:extra
        ("Basic !!!", "basic"),
        ("Bearer abcdef", "bearer"),
        ("", ""),
    ],
)
def test_the_fair_key_is_the_claimed_login_never_the_password(header: str, login: str) -> None:
    assert basic_login(header) == login
