"""The slave channel's request parser and decider (pure: bytes in, decisions out)."""

from __future__ import annotations

import pytest

from qvd.vma.slaveproto import (
    MAX_HEAD,
    MAX_HEADERS,
    HeadReader,
    ShareRequest,
    SlaveRefusal,
    ThroughputRequest,
    UsbRequest,
    decide,
    parse_head,
    refusal_response,
    share_name,
    switching_response,
)

KEY = "k3yK3yk3yK3yk3yK3yk3yK3yk3yK3yk3yK3yk3yK3yk3yK3yk3yK3yk3yK3yabcd"


def request(
    method: str = "PUT",
    target: str = "/shares/docs",
    *,
    auth: str | None = f"Basic {KEY}",
    upgrade: str | None = "qvd:sftp/1.0",
    extra: tuple[str, ...] = (),
    eol: str = "\r\n",
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    if upgrade is not None:
        lines += [f"Upgrade: {upgrade}", "Connection: Upgrade"]
    lines += list(extra)
    return (eol.join(lines) + eol + eol).encode()


def outcome(data: bytes, key: str = KEY) -> ShareRequest | UsbRequest | int:
    try:
        return decide(parse_head(data), key)
    except SlaveRefusal as refusal:
        return refusal.status


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # what clients send
        (request(), ShareRequest(name="docs")),
        (request(eol="\n"), ShareRequest(name="docs")),
        (request(upgrade="qvd:sftp/1.0;charset=UTF-8"), ShareRequest(name="docs", charset="UTF-8")),
        (request(upgrade="QVD:SFTP/1.0 ; charset=\"ISO-8859-1\""),
         ShareRequest(name="docs", charset="ISO-8859-1")),
        (request(target="/shares/My%20Docs"), ShareRequest(name="My Docs")),
        (request(target="/shares/%C3%A9t%C3%A9"), ShareRequest(name="été")),
        (request(target="/shares/docs?x=1"), ShareRequest(name="docs")),
        (request(target="/shares/" + "a" * 64), ShareRequest(name="a" * 64)),
        (request(target="/shares/...."), ShareRequest(name="....")),
        (request(auth=f"basic {KEY}"), ShareRequest(name="docs")),
        (request("POST", "/usbip", upgrade="qvd:usbip/1.0"), UsbRequest()),
        (request("POST", "/throughput", upgrade="qvd:throughput/1.0"), 400),
        (request("POST", "/throughput", upgrade="qvd:throughput/1.0",
                 extra=("X-QVD-Send: 1048576",)), ThroughputRequest(send=1 << 20)),
        (request("POST", "/throughput", upgrade="qvd:throughput/1.0",
                 extra=("X-QVD-Receive: 5",)), ThroughputRequest(receive=5)),
        (request("POST", "/throughput", upgrade="qvd:throughput/1.0",
                 extra=("X-QVD-Receive: 5", "X-QVD-Send: 5")), 400),
        (request("POST", "/throughput", upgrade="qvd:throughput/1.0",
                 extra=("X-QVD-Send: 1073741825",)), 400),
        (request("POST", "/throughput", upgrade="qvd:throughput/1.0",
                 extra=("X-QVD-Receive: -1",)), 400),
        (request("PUT", "/throughput", upgrade="qvd:throughput/1.0"), 405),
        (request("POST", "/throughput", upgrade="qvd:sftp/1.0", extra=("X-QVD-Send: 1",)), 400),
        (request("POST", "/throughput", auth=None, upgrade="qvd:throughput/1.0"), 401),
        # 401: no key, a wrong key, another scheme, a key given to an empty server key
        (request(auth=None), 401),
        (request(auth="Basic wrong"), 401),
        (request(auth=f"Basic {KEY}x"), 401),
        (request(auth=f"Bearer {KEY}"), 401),
        (request(auth=""), 401),
        (request("GET", "/nothing", auth=None), 401),  # unauthenticated: no routing at all
        # 404 / 405
        (request("PUT", "/open/ticket"), 404),
        (request("PUT", "/"), 404),
        (request("PUT", "/shares"), 404),
        (request("GET", "/shares/docs"), 405),
        (request("DELETE", "/shares/docs"), 405),
        (request("GET", "/usbip", upgrade="qvd:usbip/1.0"), 405),
        # 426 / 400: the upgrade
        (request(upgrade=None), 426),
        (request(upgrade="qvd:usbip/1.0"), 400),
        (request("POST", "/usbip", upgrade="qvd:sftp/1.0"), 400),
        (request("POST", "/usbip", upgrade=None), 426),
        (request(upgrade="qvd:sftp/1.0;mode=ro"), 400),
        (request(upgrade="qvd:sftp/1.0;charset=a b"), 400),
        (request(upgrade="qvd:sftp/1.0;charset=../x"), 400),
        (request(extra=("Upgrade: qvd:sftp/1.0",)), 400),  # repeated
        (request(extra=(f"Authorization: Basic {KEY}",)), 400),  # repeated
        # 400: share names
        (request(target="/shares/"), 400),
        (request(target="/shares/.."), 400),
        (request(target="/shares/."), 400),
        (request(target="/shares/%2E%2E"), 400),
        (request(target="/shares/../../etc"), 400),
        (request(target="/shares/..%2F..%2Fetc"), 400),
        (request(target="/shares/a%2fb"), 400),
        (request(target="/shares/a/b"), 400),
        (request(target="/shares/a%00b"), 400),
        (request(target="/shares/a%0Ab"), 400),
        (request(target="/shares/a%7Fb"), 400),
        (request(target="/shares/a%C2%85b"), 400),  # NEL, a C1 control
        (request(target="/shares/%ZZ"), 400),
        (request(target="/shares/a%"), 400),
        (request(target="/shares/%FF%FE"), 400),  # not UTF-8
        (request(target="/shares/" + "a" * 65), 400),
        (request(target="/shares/%252F"), ShareRequest(name="%2F")),  # decoded once only
    ],
)  # fmt: skip
def test_decisions(data: bytes, expected: ShareRequest | UsbRequest | int) -> None:
    assert outcome(data) == expected


def test_an_empty_server_key_refuses_even_an_empty_client_key() -> None:
    assert outcome(request(auth="Basic "), key="") == 401
    assert outcome(request(), key="") == 401


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"PUT /shares/docs\r\n\r\n",
        b"PUT  /shares/docs HTTP/1.1\r\n\r\n",
        b"PUT /shares/docs HTTP/2.0\r\n\r\n",
        b"PUT /shares/docs FTP/1.1\r\n\r\n",
        b"PUT shares/docs HTTP/1.1\r\n\r\n",
        b"PUT http://x/shares/docs HTTP/1.1\r\n\r\n",
        b"P(T /shares/docs HTTP/1.1\r\n\r\n",
        b"PUT /shares/d\xc3\xa9 HTTP/1.1\r\n\r\n",  # raw non-ASCII
        b"PUT /shares/docs HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"PUT /shares/docs HTTP/1.1\r\n folded: x\r\n\r\n",
        b"PUT /shares/docs HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"PUT /shares/docs HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"PUT /shares/docs HTTP/1.1\r\nX: a\rb\r\n\r\n",
    ],
)
def test_malformed_heads_are_400(data: bytes) -> None:
    with pytest.raises(SlaveRefusal) as caught:
        parse_head(data)
    assert caught.value.status == 400


def test_header_count_and_size_limits() -> None:
    many = tuple(f"X-{n}: v" for n in range(MAX_HEADERS - 3))  # plus 3 of request()
    assert outcome(request(extra=many)) == ShareRequest(name="docs")
    assert outcome(request(extra=(*many, "X-last: v"))) == 400
    big = request(extra=("X-pad: " + "a" * MAX_HEAD,))
    assert outcome(big) == 431


def test_reader_byte_by_byte_keeps_the_bytes_after_the_head() -> None:
    data = request() + b"\x00\x00\x00\x05sftp"
    reader = HeadReader()
    results = [reader.feed(data[i : i + 1]) for i in range(len(data))]
    done = [r for r in results if r is not None]
    assert done[0] == (request(), b"")  # complete as soon as the blank line arrives
    reader = HeadReader()
    assert reader.feed(data) == (request(), b"\x00\x00\x00\x05sftp")


def test_reader_bare_lf_and_limits() -> None:
    assert HeadReader().feed(b"GET / HTTP/1.1\nA: b\n\nrest") == (
        b"GET / HTTP/1.1\nA: b\n\n",
        b"rest",
    )
    reader = HeadReader()
    assert reader.feed(b"PUT /x HTTP/1.1\r\n") is None
    with pytest.raises(SlaveRefusal) as closed:
        reader.feed(b"")
    assert closed.value.status == 400
    reader = HeadReader()
    for _ in range(MAX_HEAD // 1000):
        assert reader.feed(b"a" * 1000) is None
    with pytest.raises(SlaveRefusal) as big:
        reader.feed(b"a" * 1000)
    assert big.value.status == 431
    with pytest.raises(SlaveRefusal) as late:  # the end came, but past the limit
        HeadReader().feed(b"X" * (MAX_HEAD + 1) + b"\r\n\r\n")
    assert late.value.status == 431


def test_share_name_alone() -> None:
    assert share_name("caf%C3%A9") == "café"
    for bad in ("", "..", "a/b", "a%2Fb", "\x01", "%01"):
        with pytest.raises(SlaveRefusal):
            share_name(bad)


def test_responses_are_complete_http_messages() -> None:
    refused = refusal_response(SlaveRefusal(401, "the slave key is missing or wrong"))
    head, _, body = refused.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 401 Unauthorized"
    assert 'WWW-Authenticate: Basic realm="QVD slave channel"' in lines
    assert f"Content-Length: {len(body)}" in lines
    assert body == b"the slave key is missing or wrong\n"
    allowed = refusal_response(SlaveRefusal(405, "use PUT", allow="PUT"))
    assert b"\r\nAllow: PUT\r\n" in allowed
    assert allowed.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    usb = refusal_response(SlaveRefusal(503, "no vhci-hcd"))
    assert usb.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert usb.endswith(b"no vhci-hcd\n")
    switched = switching_response("qvd:sftp/1.0", "/home/u/Redirected/My Docs")
    assert switched == (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: qvd:sftp/1.0\r\n"
        b"X-QVD-Share-Ticket: /home/u/Redirected/My%20Docs\r\n\r\n"
    )
    assert switching_response("qvd:usbip/1.0") == (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: qvd:usbip/1.0\r\n\r\n"
    )
