"""The head limits of the pure HTTP state machine, and a fuzz run over it: whatever
bytes arrive, in whatever pieces, ``next_event`` gives a request or a signal or raises
a ``ProtocolError`` (never anything else, never a recursion), and each refusal is the
status HTTP names for it."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qvd.l7r.errors import (
    BadRequest,
    ContentTooLarge,
    HeadTooLarge,
    ProtocolError,
    UriTooLong,
)
from qvd.l7r.wire import CLOSED, NEED_DATA, HeadLimits, Request, ServerConnection

PING = b"GET /qvd/ping HTTP/1.1\r\n\r\n"


def events(conn: ServerConnection, chunks: list[bytes]) -> list[object]:
    """Feed ``chunks`` one by one, collecting every event (answering each request)."""
    seen: list[object] = []
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            seen.append(event)
            if not isinstance(event, Request):
                break
            conn.respond(200, b"ok")
            if not conn.keep_alive:
                return seen
        if event is CLOSED:
            break
    return seen


def refusal(data: bytes, *, piece: int = 0) -> ProtocolError:
    conn = ServerConnection()
    chunks = [data[i : i + piece] for i in range(0, len(data), piece)] if piece else [data]
    with pytest.raises(ProtocolError) as raised:
        events(conn, chunks)
    return raised.value


def test_a_megabyte_of_blank_lines_is_refused_without_recursion() -> None:
    error = refusal(b"\r\n" * 500_000)
    assert isinstance(error, BadRequest)
    assert "blank lines" in error.message


def test_blank_lines_arriving_one_by_one_are_counted_across_reads() -> None:
    conn = ServerConnection()
    limit = conn.limits.blank
    for _ in range(limit):
        conn.receive_data(b"\n")
        assert conn.next_event() is NEED_DATA
    conn.receive_data(b"\n")
    with pytest.raises(BadRequest) as raised:
        conn.next_event()
    assert conn.fail(raised.value).startswith(b"HTTP/1.1 400 ")


def test_a_few_blank_lines_before_a_request_are_ignored() -> None:
    conn = ServerConnection()
    seen = events(conn, [b"\r\n\n\r", b"\n" + PING, b"\r\n" + PING])
    assert [e.path for e in seen if isinstance(e, Request)] == ["/qvd/ping"] * 2
    assert seen[-1] is CLOSED


def test_request_line_over_its_limit_is_414_before_its_end_arrives() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET /" + b"a" * 9000)  # no newline yet
    with pytest.raises(UriTooLong) as raised:
        conn.next_event()
    assert conn.fail(raised.value).startswith(b"HTTP/1.1 414 URI Too Long\r\n")


def test_a_megabyte_header_line_is_431() -> None:
    error = refusal(b"GET / HTTP/1.1\r\nX-Big: " + b"x" * 1_000_000 + b"\r\n\r\n", piece=65536)
    assert isinstance(error, HeadTooLarge)
    assert error.status == 431


def test_ten_thousand_headers_are_431_by_count() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"A: %d\r\n" % (i % 10) for i in range(10_000))
    conn = ServerConnection(HeadLimits(head=1 << 20))  # the count, not the size, refuses
    conn.receive_data(head + b"\r\n")
    with pytest.raises(HeadTooLarge) as raised:
        conn.next_event()
    assert "100 header lines" in raised.value.message


def test_a_body_is_413() -> None:
    for extra in (b"Content-Length: 10\r\n", b"Transfer-Encoding: chunked\r\n"):
        error = refusal(b"GET /qvd/ping HTTP/1.1\r\n" + extra + b"\r\n")
        assert isinstance(error, ContentTooLarge)
        assert error.status == 413


def test_limits_hold_when_the_head_arrives_byte_by_byte() -> None:
    error = refusal(b"GET / HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n", piece=1)
    assert isinstance(error, HeadTooLarge)


# ---- fuzz ------------------------------------------------------------------------------------
_PIECES = st.sampled_from(
    [
        b"GET /qvd/ping HTTP/1.1", b"GET /qvd/list_of_vm?x=%ff HTTP/1.1", b"HTTP/1.0",
        b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b"Host: a", b"Content-Length: 1",
        b"Transfer-Encoding: chunked", b"Connection: close", b"Connection: Upgrade",
        b"Upgrade: QVD/1.0", b"\x00", b"\xff", b"%", b"?", b"GET", b"X" * 300,
    ]
)  # fmt: skip
_STREAMS = st.lists(st.one_of(_PIECES, st.binary(max_size=64)), max_size=60).map(b"".join)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_STREAMS, cuts=st.lists(st.integers(min_value=1, max_value=64), max_size=20))
def test_hostile_byte_streams_only_ever_raise_protocol_errors(data: bytes, cuts: list[int]) -> None:
    limits = HeadLimits(head=512, request_line=128, header_line=96, headers=6, blank=64)
    conn = ServerConnection(limits)
    chunks: list[bytes] = []
    rest = data
    for cut in cuts:
        chunks.append(rest[:cut])
        rest = rest[cut:]
    chunks.append(rest)
    error: ProtocolError | None = None
    try:
        events(conn, chunks)
    except ProtocolError as exc:  # anything else fails the test
        error = exc
    if error is not None:
        assert 400 <= error.status < 600
        assert conn.fail(error).startswith(f"HTTP/1.1 {error.status} ".encode())
