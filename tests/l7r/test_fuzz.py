"""A bounded, seeded fuzz run against the real L7R over TLS: broken request lines, bad
methods, huge heads, bad headers and credentials, binary junk, truncated requests, and
raw junk on the TLS port. Every reply must be a 4xx/5xx status line (never a 500: that
is an unexpected exception) or a close, within a deadline; the server still answers
``/qvd/ping`` afterwards."""

from __future__ import annotations

import base64
import contextlib
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.l7r import L7rServer
from tests.l7r.conftest import l7r_config, seed

SEED = 20261125
CASES = 300
DEADLINE = 10.0  # per case; the server gives up on an unfinished head after 1 s,
# on an unfinished TLS handshake after 5 s (24 handshakes at once on a loaded machine)
STATUS_LINE = re.compile(rb"^HTTP/1\.1 ([45]\d\d) [A-Za-z ]*\r\n")
VALID = (
    b"GET /qvd/list_of_vm HTTP/1.1\r\nHost: l7r\r\n"
    b"Authorization: Basic YWxpY2U6c2VjcmV0\r\nUser-Agent: fuzz\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class Case:
    kind: str
    data: bytes
    tls: bool = True  # False: the bytes go raw to the TLS port
    hang_up: bool = False  # close right after sending (no reply is read)


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    status: int | None  # None: the server closed without a reply
    head: bytes = b""
    error: str = ""


# ---- generators (each makes a request the server must refuse) -------------------------------
def _printable(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(0x21, 0x7F) for _ in range(n))


def broken_request_line(rng: random.Random) -> Case:
    lines = [
        b"GET /qvd/ping",
        b"GET /qvd/ping HTTP/1.0",
        b"GET /qvd/ping HTTP/2.0",
        b"GET /qvd/ping HTTP/1.1 extra",
        b"GET  /qvd/ping HTTP/1.1",
        b"/qvd/ping HTTP/1.1",
        b"GET /qvd/p\x00ing HTTP/1.1",
        b"GET /qvd/ping\tHTTP/1.1",
        b"GET /qvd/ping?%ff%fe=1 HTTP/1.1",
        b"GET /" + _printable(rng, rng.randrange(1, 200)) + b" HTTP/1.1",
        b"GET /qvd/" + b"a" * rng.randrange(17000, 40000) + b" HTTP/1.1",
        _printable(rng, rng.randrange(1, 100)),
        b"GET /qvd/ping HTTP/" + _printable(rng, rng.randrange(1, 6)),
    ]
    eol = rng.choice([b"\r\n", b"\n"])
    return Case("request-line", rng.choice(lines) + eol + eol)


def bad_method(rng: random.Random) -> Case:
    methods = [b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"TRACE", b"PATCH", b"get"]
    methods += [_printable(rng, rng.randrange(1, 12)).replace(b"G", b"X")]
    methods += [bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randrange(1, 8)))]
    path = rng.choice([b"/qvd/ping", b"/qvd/list_of_vm", b"/qvd/connect_to_vm?id=1", b"*"])
    return Case("method", rng.choice(methods) + b" " + path + b" HTTP/1.1\r\n\r\n")


def huge_head(rng: random.Random) -> Case:
    if rng.random() < 0.5:
        head = b"X-Big: " + b"x" * rng.randrange(17000, 70000) + b"\r\n"
    else:
        count = rng.randrange(200, 1000)
        head = b"".join(b"X-H%d: %s\r\n" % (i, _printable(rng, 80)) for i in range(count))
    return Case("huge", b"GET /qvd/ping HTTP/1.1\r\n" + head + b"\r\n")


def bad_header(rng: random.Random) -> Case:
    headers = [
        b"NoColonHere",
        b"Bad Name: x",
        b"Bad\x01Name: x",
        b"X-Ok: 1\r\n folded-but-fine: x\r\nNoColon",
        b"Content-Length: 5",
        b"Content-Length: -1",
        b"Content-Length: 1\r\nContent-Length: 2",
        b"Transfer-Encoding: chunked",
        b"X-Null: a\x00b",
        b": empty-name",
        _printable(rng, 30).replace(b":", b""),
    ]
    path = rng.choice([b"/qvd/ping", b"/qvd/list_of_vm"])
    return Case("header", b"GET " + path + b" HTTP/1.1\r\n" + rng.choice(headers) + b"\r\n\r\n")


def bad_credentials(rng: random.Random) -> Case:
    values = [
        b"Basic " + _printable(rng, rng.randrange(1, 60)),
        b"Basic " + base64.b64encode(rng.randbytes(rng.randrange(1, 60))),
        b"Basic " + base64.b64encode(b"nobody@" + _printable(rng, 10) + b":pw"),
        b"Basic " + base64.b64encode(b"alice:" + _printable(rng, 10)),
        b"Basic " + base64.b64encode(b":"),
        b"Bearer " + _printable(rng, rng.randrange(1, 200)),
        b"Bearer ",
        _printable(rng, rng.randrange(1, 40)) + b" " + _printable(rng, 20),
        b"Basic " + base64.b64encode(b"alice:secret\xff\xfe"),
    ]
    path = rng.choice(
        [b"/qvd/list_of_vm", b"/qvd/create_auth_token", b"/qvd/stop_vm?id=1",
         b"/qvd/connect_to_vm?id=1", b"/qvd/authenticate_user?store_auth=1"]
    )  # fmt: skip
    extra = b"Connection: Upgrade\r\nUpgrade: QVD/1.0\r\n" if rng.random() < 0.3 else b""
    head = b"GET " + path + b" HTTP/1.1\r\nAuthorization: " + rng.choice(values) + b"\r\n"
    return Case("credentials", head + extra + b"\r\n")


def unknown_path(rng: random.Random) -> Case:
    path = b"/" + rng.choice([b"qvd/", b"", b"api/"]) + _printable(rng, rng.randrange(1, 40))
    path = path.replace(b"?", b"").replace(b"%", b"")
    if path in (b"/qvd/ping",) or path.startswith(b"/qvd/ping"):
        path = b"/nope" + path
    return Case("path", b"GET " + path + b" HTTP/1.1\r\n\r\n")


def binary_junk(rng: random.Random) -> Case:
    data = rng.randbytes(rng.randrange(1, 4096))
    if rng.random() < 0.5:
        data += b"\r\n\r\n"
    if data.startswith(b"GET "):
        data = b"\x00" + data
    return Case("binary", data, hang_up=rng.random() < 0.3)


def truncated(rng: random.Random) -> Case:
    cut = rng.randrange(1, len(VALID) - 2)
    return Case("truncated", VALID[:cut], hang_up=rng.random() < 0.5)


def raw_on_tls_port(rng: random.Random) -> Case:
    data = rng.choice([VALID, rng.randbytes(rng.randrange(1, 2048)), b"\x16\x03\x01\x00\x05junk"])
    return Case("raw", data, tls=False)


GENERATORS: list[tuple[Callable[[random.Random], Case], int]] = [
    (broken_request_line, 5),
    (bad_method, 3),
    (huge_head, 2),
    (bad_header, 4),
    (bad_credentials, 4),
    (unknown_path, 1),
    (binary_junk, 3),
    (truncated, 2),
    (raw_on_tls_port, 1),
]


def make_cases(seed_value: int, count: int) -> list[Case]:
    rng = random.Random(seed_value)
    makers = [g for g, weight in GENERATORS for _ in range(weight)]
    return [rng.choice(makers)(rng) for _ in range(count)]


# ---- the client side --------------------------------------------------------------------------
def _tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def read_reply(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """(response head, or the bytes before the close; True if the server closed)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return buffer, True
        buffer += chunk
    return buffer[: buffer.index(b"\r\n\r\n") + 4], False


def run_case(port: int, case: Case) -> Outcome:
    deadline = time.monotonic() + DEADLINE
    raw = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    try:
        sock: socket.socket = _tls_context().wrap_socket(raw) if case.tls else raw
        with sock:
            # the server may refuse (431) and close before we finish sending
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
                sock.sendall(case.data)
            if case.hang_up:
                return Outcome(case, None)
            try:
                head, closed = read_reply(sock, deadline)
            except TimeoutError:
                return Outcome(case, None, error="no reply and no close before the deadline")
            except (ConnectionResetError, ssl.SSLError) as exc:
                if case.tls and len(case.data) < 16 * 1024:
                    return Outcome(case, None, error=f"unclean close: {exc!r}")
                return Outcome(case, None)  # unread bytes past the head limit: a reset
    finally:
        raw.close()
    if closed and not head:
        return Outcome(case, None)
    match = STATUS_LINE.match(head)
    if match is None or closed:
        return Outcome(case, None, head, error="not a complete 4xx/5xx response head")
    return Outcome(case, int(match.group(1)), head)


@pytest.fixture
def fuzz_server(db: DatabaseTarget, engine: Engine, tmp_path: Path) -> Iterator[L7rServer]:
    seeded = seed(engine)
    config = l7r_config(
        tmp_path / "run",
        **{"internal.l7r.timeout.request": "1", "internal.l7r.timeout.handshake": "5"},
    )
    server = L7rServer(config, db, seeded.host_id, "127.0.0.1")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_whitespace_before_the_first_header_is_refused(fuzz_server: L7rServer) -> None:
    case = Case("header", b"GET /qvd/ping HTTP/1.1\r\n folded-first: x\r\n\r\n")
    assert run_case(fuzz_server.port, case).status == 400


def test_generators_are_deterministic() -> None:
    assert make_cases(SEED, 40) == make_cases(SEED, 40)
    kinds = {case.kind for case in make_cases(SEED, CASES)}
    assert kinds == {
        "request-line", "method", "huge", "header", "credentials", "path", "binary",
        "truncated", "raw",
    }  # fmt: skip


def test_fuzzed_requests_get_refused_cleanly(
    fuzz_server: L7rServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="qvd.l7r")
    cases = make_cases(SEED, CASES)
    with ThreadPoolExecutor(max_workers=24) as pool:
        outcomes = list(pool.map(lambda c: run_case(fuzz_server.port, c), cases))
    bad = [o for o in outcomes if o.error or o.status == 500]
    assert not bad, "\n".join(
        f"{o.case.kind} {o.case.data[:120]!r}: {o.error or o.head[:200]!r}" for o in bad[:10]
    )
    statuses = {o.status for o in outcomes}
    assert {400, 401, 404, 405, 408, 431, 505} <= statuses, statuses
    assert not [r for r in caplog.records if r.name.startswith("qvd.l7r")], caplog.text
    ping = run_case(fuzz_server.port, Case("ping", b"GET /qvd/ping HTTP/1.1\r\n\r\n"))
    assert ping.head.startswith(b"HTTP/1.1 200 OK\r\n"), ping
