"""Attack test: hostile request heads against the real L7R (TLS, throwaway PostgreSQL).

On main before this fix, a head of only blank lines made ``ServerConnection``
recurse once per blank line: a megabyte of CR LF raised RecursionError inside the
connection's task (no answer, an unhandled exception in the log). Here each attack
gets its HTTP answer or a clean close, nothing is logged as an error, and the server
keeps answering other clients while the attacks are in flight:

- a blank-line flood (1 MB of CR LF, then more) → 400;
- a 1 MB header line → 431 as soon as the line passes its limit;
- 10,000 headers → 431;
- a 1 MB request line → 414;
- a body → 413;
- slow loris: 40 connections sending a head one byte at a time → 408 each when the
  head clock (``internal.l7r.timeout.request``) runs out, while a normal login and list
  is served in the middle of it.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.l7r import L7rServer
from tests.l7r.conftest import PASSWORD, l7r_config, seed

WAIT = 60.0  # generous event waits, never a speed threshold
HEAD_CLOCK = 8  # internal.l7r.timeout.request of this server (the clock starts at the
# end of the TLS handshake: 40 of them on a loaded machine take a few seconds)
LOGIN = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
LIST = f"GET /qvd/list_of_vm HTTP/1.1\r\nAuthorization: Basic {LOGIN}\r\n\r\n".encode()
MEGABYTE = 1024 * 1024


@pytest.fixture
def server(db: DatabaseTarget, engine: Engine, tmp_path: Path) -> Iterator[L7rServer]:
    seeded = seed(engine)
    config = l7r_config(tmp_path / "run", **{"internal.l7r.timeout.request": str(HEAD_CLOCK)})
    l7r = L7rServer(config, db, seeded.host_id, "127.0.0.1")
    l7r.start()
    try:
        yield l7r
    finally:
        l7r.stop()


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Error records of the L7R and of asyncio (an exception escaping a connection's
    task is logged by asyncio), checked empty at the end of each test."""
    caplog.set_level(logging.ERROR)
    return caplog.records


@contextlib.contextmanager
def _open(port: int) -> Iterator[ssl.SSLSocket]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        sock = ctx.wrap_socket(raw)
        with sock:
            yield sock


def _answer(sock: ssl.SSLSocket) -> bytes:
    """The response head, or b"" when the server closed (or reset) without one."""
    data = b""
    with contextlib.suppress(ConnectionResetError, ssl.SSLError, BrokenPipeError):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n")[0]


def _attack(port: int, payload: bytes, piece: int = 64 * 1024) -> bytes:
    """Send ``payload`` (in pieces, giving up once the server stops reading) while
    reading the answer; the answer's status line.

    One thread drives the socket (non-blocking, ``select``): an SSL object written by
    one thread while another reads or closes it can crash the interpreter."""
    with _open(port) as sock:
        sock.setblocking(False)
        data, sent, deadline = b"", 0, time.monotonic() + WAIT
        with contextlib.suppress(ConnectionResetError, BrokenPipeError, ssl.SSLError):
            while b"\r\n\r\n" not in data and time.monotonic() < deadline:
                writing = [sock] if sent < len(payload) else []
                readable, writable, _ = select.select([sock], writing, [], 1.0)
                if readable or sock.pending():
                    try:
                        chunk = sock.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        chunk = None
                    if chunk == b"":
                        break
                    data += chunk or b""
                if writable:
                    with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        sent += sock.send(payload[sent : sent + piece])
    return data.split(b"\r\n\r\n")[0].split(b"\r\n")[0]


def _still_serving(port: int) -> None:
    with _open(port) as sock:
        sock.sendall(LIST)
        assert _answer(sock).startswith(b"HTTP/1.1 200 OK")


def _attack_until_answered(port: int, payload: bytes, status: int, tries: int = 3) -> None:
    """The attack is answered with ``status``. The server closes with the rest of the
    attack unread, and on a loaded machine the kernel's reset can overtake the answer
    (the client reads nothing): such a try is repeated, a different status never is."""
    seen = []
    for _ in range(tries):
        line = _attack(port, payload)
        seen.append(line)
        assert line == b"" or line.startswith(f"HTTP/1.1 {status} ".encode()), seen
        if line:
            return
    pytest.fail(f"no answer in {tries} tries: {seen}")


def test_a_blank_line_flood_is_refused_not_a_recursion(
    server: L7rServer, errors: list[logging.LogRecord]
) -> None:
    _attack_until_answered(server.port, b"\r\n" * MEGABYTE, 400)
    _attack_until_answered(server.port, b"\n" * MEGABYTE + LIST, 400)
    _still_serving(server.port)
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize(
    ("name", "payload", "status"),
    [
        ("1 MB header line", b"GET /qvd/ping HTTP/1.1\r\nX-Big: " + b"x" * MEGABYTE, 431),
        (
            "10k headers",
            b"GET /qvd/ping HTTP/1.1\r\n" + b"".join(b"A%d: b\r\n" % i for i in range(10_000)),
            431,
        ),
        ("1 MB request line", b"GET /qvd/" + b"a" * MEGABYTE + b" HTTP/1.1\r\n\r\n", 414),
        ("body", b"GET /qvd/ping HTTP/1.1\r\nContent-Length: 5000000\r\n\r\nxxxx", 413),
    ],
)
def test_oversized_heads_get_their_status_and_others_are_served(
    server: L7rServer, errors: list[logging.LogRecord], name: str, payload: bytes, status: int
) -> None:
    with ThreadPoolExecutor(4) as pool:
        attacks = [pool.submit(_attack, server.port, payload) for _ in range(4)]
        _still_serving(server.port)
        answers = [attack.result(WAIT) for attack in attacks]
    # each attack is answered with its status or, rarely on a loaded machine, closed
    # before the client read the answer (the server closes with the rest of the attack
    # unread: the kernel's reset can overtake the answer; the issue's "answered or closed
    # cleanly"); never another status, and most attacks read the status
    expected = f"HTTP/1.1 {status} ".encode()
    assert all(a.startswith(expected) or a == b"" for a in answers), (name, answers)
    assert sum(a.startswith(expected) for a in answers) >= len(answers) // 2, (name, answers)
    _still_serving(server.port)
    assert not errors, [r.getMessage() for r in errors]


def test_slow_loris_heads_time_out_while_others_are_served(
    server: L7rServer, errors: list[logging.LogRecord]
) -> None:
    slow = 40
    started = threading.Barrier(slow + 1)
    head = b"GET /qvd/list_of_vm HTTP/1.1\r\nX-Slow: " + b"z" * 200

    def loris() -> bytes:
        with _open(server.port) as sock:
            sock.settimeout(WAIT)
            sock.sendall(head[:1])
            started.wait(WAIT)
            with contextlib.suppress(OSError, ssl.SSLError):
                for byte in head[1:]:  # one byte every 0.1 s: longer than the head clock
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            return _answer(sock).split(b"\r\n")[0]

    with ThreadPoolExecutor(slow) as pool:
        lorises = [pool.submit(loris) for _ in range(slow)]
        started.wait(WAIT)
        began = time.monotonic()
        _still_serving(server.port)  # served in the middle of the attack
        served_while_attacked = all(not f.done() for f in lorises)
        served_after = time.monotonic() - began
        answers = [f.result(WAIT) for f in lorises]
    assert served_while_attacked, f"the login came after the slow heads ({served_after:.2f} s)"
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers
    _still_serving(server.port)
    assert not errors, [r.getMessage() for r in errors]
