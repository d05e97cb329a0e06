"""The keyed work queue: dedupe, one in flight per key, delays, backoff."""

from __future__ import annotations

import threading
import time

from qvd.hkd.workqueue import WorkQueue


def test_a_waiting_key_is_queued_once() -> None:
    q: WorkQueue[int] = WorkQueue()
    for _ in range(3):
        q.add(1)
    q.add(2)
    assert [q.get(0.1), q.get(0.1), q.get(0.05)] == [1, 2, None]


def test_a_key_added_while_in_flight_comes_back_after_done() -> None:
    q: WorkQueue[int] = WorkQueue()
    q.add(7)
    assert q.get(0.1) == 7
    q.add(7)
    assert q.get(0.05) is None  # not handed to a second worker
    q.done(7)
    assert q.get(0.1) == 7


def test_delays_and_backoff() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=0.2)
    q.add_after("a", 0.1)
    start = time.monotonic()
    assert q.get(1.0) == "a"
    assert time.monotonic() - start >= 0.09
    q.done("a")
    assert [q.add_rate_limited("b") for _ in range(4)] == [0.05, 0.1, 0.2, 0.2]
    assert q.failures("b") == 4
    q.forget("b")
    assert q.failures("b") == 0


def test_close_wakes_waiting_workers() -> None:
    q: WorkQueue[int] = WorkQueue()
    got: list[int | None] = []
    worker = threading.Thread(target=lambda: got.append(q.get()))
    worker.start()
    time.sleep(0.05)
    q.close()
    worker.join(1.0)
    assert got == [None]
