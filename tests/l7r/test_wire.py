"""The HTTP layer alone: real clients' request bytes in, exact response bytes out."""

from __future__ import annotations

import pytest

from qvd.l7r.errors import BadRequest, ContentTooLarge, HeadTooLarge, VersionNotSupported
from qvd.l7r.wire import CLOSED, NEED_DATA, PAUSED, Request, ServerConnection

# real-clients.md A1, A2, B1, B2 (exact bytes)
A1 = (
    b"GET /qvd/list_of_vm HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n"
    b"Authorization: Basic YWxpY2U6c2VjcmV0\r\nUser-Agent: QVD/3.1 libcurl/7.88.1\r\n"
    b"Accept: */*\r\n\r\n"
)
A2 = (
    b"GET /qvd/connect_to_vm?id=10&qvd.client.os=linux&qvd.client.geometry=800x600"
    b"&qvd.client.link=adsl&qvd.client.keyboard=pc105/en&qvd.client.fullscreen=0 HTTP/1.1\n"
    b"Authorization: Basic YWxpY2U6c2VjcmV0\nConnection: Upgrade\nUpgrade: QVD/1.0\n\n"
)
B1 = (
    b"GET /qvd/list_of_vm? HTTP/1.1\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\n"
    b"Accept: application/json\r\nUser-Agent: QVD::HTTPC/0.01 (linux)\r\n\r\n"
)
B2 = (
    b"GET /qvd/connect_to_vm?qvd.client.keyboard=pc105%2Fes&qvd.client.audio.compression.enable=1"
    b"&qvd.client.link=adsl&qvd.client.nxagent.extra_args=&qvd.client.fullscreen=&id=10"
    b"&qvd.client.geometry=1024x768 HTTP/1.1\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\n"
    b"Connection: Upgrade\r\nUpgrade: QVD/1.0\r\nUser-Agent: QVD::HTTPC/0.01 (linux)\r\n\r\n"
)
GREETING = b"NXPROXY-3.5.0-3.5.99 stream=default,data=default "


def feed(conn: ServerConnection, data: bytes, *, bytewise: bool = False) -> Request:
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    event: object = NEED_DATA
    for chunk in chunks:
        assert event is NEED_DATA
        conn.receive_data(chunk)
        event = conn.next_event()
    assert isinstance(event, Request)
    return event


@pytest.mark.parametrize("bytewise", [False, True])
def test_c_client_connect_bare_lf_without_host(bytewise: bool) -> None:
    conn = ServerConnection()
    request = feed(conn, A2, bytewise=bytewise)
    assert request.path == "/qvd/connect_to_vm"
    assert request.param("qvd.client.keyboard") == "pc105/en"
    assert request.param("id") == "10"
    assert request.wants_upgrade
    assert "host" not in request.headers
    assert conn.inform("Starting virtual machine") == (
        b"HTTP/1.1 102 Processing\r\nX-QVD-VM-Info: Starting virtual machine\r\n\r\n"
    )
    assert conn.switch("KEY") == b"HTTP/1.1 101 Switching Protocols\r\nX-QVD-Slave-Key: KEY\r\n\r\n"
    assert conn.next_event() is PAUSED


def test_perl_client_list_then_connect_on_one_connection_with_nx_bytes_behind() -> None:
    conn = ServerConnection()
    conn.receive_data(B1 + B2 + GREETING)
    first = conn.next_event()
    assert isinstance(first, Request)
    assert first.path == "/qvd/list_of_vm"
    assert first.query == ()
    assert conn.next_event() is PAUSED  # one request at a time
    out = conn.respond(200, b"[]", "application/json")
    assert out == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"
    )
    assert conn.keep_alive
    second = conn.next_event()
    assert isinstance(second, Request)
    assert second.param("qvd.client.keyboard") == "pc105/es"
    assert second.param("qvd.client.fullscreen") == ""
    conn.switch("K")
    assert conn.trailing_data == GREETING


def test_curl_list_with_host_and_keep_alive_then_eof() -> None:
    conn = ServerConnection()
    assert feed(conn, A1).headers["host"] == "127.0.0.1:8443"
    conn.respond(401, b"no\n", headers=[("WWW-Authenticate", 'Basic realm="QVD"')])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


def test_not_upgrade_then_refused_keeps_the_connection() -> None:
    conn = ServerConnection()
    request = feed(conn, A2.replace(b"Connection: Upgrade\n", b""))
    assert not request.wants_upgrade
    out = conn.respond(426, b"upgrade\n")
    assert out.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert conn.keep_alive


@pytest.mark.parametrize(
    ("data", "error", "status"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", VersionNotSupported, 505),
        (b"GET / HTTP/2.0\n\n", VersionNotSupported, 505),
        (b"garbage\r\n\r\n", BadRequest, 400),
        (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", BadRequest, 400),
        (b"GET /x?a=%ff HTTP/1.1\r\n\r\n", BadRequest, 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", ContentTooLarge, 413),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", HeadTooLarge, 431),
    ],
)
def test_broken_requests(data: bytes, error: type[Exception], status: int) -> None:
    conn = ServerConnection()
    conn.receive_data(data)
    with pytest.raises(error) as raised:
        conn.next_event()
    out = conn.fail(raised.value)  # type: ignore[arg-type]
    assert out.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Content-Length: " in out
    assert not conn.keep_alive


def test_head_too_large_without_terminator() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * 17000)
    with pytest.raises(HeadTooLarge):
        conn.next_event()


def test_eof_inside_head_is_a_bad_request() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nAuth")
    assert conn.next_event() is NEED_DATA
    assert conn.has_partial_head
    conn.receive_data(b"")
    with pytest.raises(BadRequest):
        conn.next_event()


def test_folded_header_and_connection_close() -> None:
    conn = ServerConnection()
    request = feed(conn, b"GET /qvd/ping HTTP/1.1\nX-A: b\n  c\nConnection: close\n\n")
    assert request.headers["x-a"] == "b c"
    conn.respond(200, b"I am alive!")
    assert not conn.keep_alive
