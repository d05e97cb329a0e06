"""The reverse direction's pure parts: the client's decision on a desktop's request, the
request head the desktop sends, the answer it parses, and the display it finds."""

from __future__ import annotations

import pytest

from qvd.vma.sharetoclient import ShareError, display_number
from qvd.vma.slaveproto import (
    SlaveRefusal,
    decide_from_desktop,
    parse_head,
    parse_response_head,
    refusal_response,
    request_head,
    switching_response,
)

KEY = "s3cret"


def _decide(head: bytes, key: str = KEY) -> object:
    return decide_from_desktop(parse_head(head), key)


def test_a_get_of_a_share_with_the_key_is_accepted() -> None:
    request = _decide(request_head("GET", "/shares/My%20Docs", KEY, "qvd:sftp/1.0"))
    assert getattr(request, "name", None) == "My Docs"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (request_head("GET", "/shares/a", "other", "qvd:sftp/1.0"), 401),
        (request_head("PUT", "/shares/a", KEY, "qvd:sftp/1.0"), 405),
        (request_head("GET", "/usbip", KEY, "qvd:usbip/1.0"), 404),
        (request_head("GET", "/shares/a", KEY, "qvd:usbip/1.0"), 400),
        (request_head("GET", "/shares/%2e%2e", KEY, "qvd:sftp/1.0"), 400),
        (b"GET /shares/a HTTP/1.1\r\nAuthorization: Basic s3cret\r\n\r\n", 426),
    ],
)
def test_refusals(head: bytes, status: int) -> None:
    with pytest.raises(SlaveRefusal) as refused:
        _decide(head)
    assert refused.value.status == status


def test_the_key_is_checked_before_the_route() -> None:
    with pytest.raises(SlaveRefusal) as refused:
        _decide(request_head("DELETE", "/nothing", "bad", "x"))
    assert refused.value.status == 401


def test_an_empty_key_refuses_everything() -> None:
    with pytest.raises(SlaveRefusal) as refused:
        _decide(
            b"GET /shares/a HTTP/1.1\r\nAuthorization: Basic \r\nUpgrade: qvd:sftp/1.0\r\n\r\n", ""
        )
    assert refused.value.status == 401


@pytest.mark.parametrize("part", ["a b", "a\r\nX: y", "a\x00"])
def test_request_head_refuses_injected_lines(part: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        request_head("GET", "/shares/x", part, "qvd:sftp/1.0")


def test_responses_parse_back() -> None:
    assert parse_response_head(switching_response("qvd:sftp/1.0", "a")) == (101, 0)
    refusal = refusal_response(SlaveRefusal(403, "no"))
    head, _, body = refusal.partition(b"\r\n\r\n")
    assert parse_response_head(head + b"\r\n\r\n") == (403, len(body))
    assert b"403 Forbidden" in refusal
    with pytest.raises(ValueError, match="not an HTTP answer"):
        parse_response_head(b"SSH-2.0-x\r\n\r\n")


@pytest.mark.parametrize(
    ("display", "number"),
    [(":100", 100), (":100.0", 100), ("nx/nx,options=/run/qvd/nxagent.conf:100", 100)],
)
def test_display_numbers(display: str, number: int) -> None:
    assert display_number(display) == number


@pytest.mark.parametrize("display", [None, "", "host", ":x"])
def test_no_display_is_a_clear_error(display: str | None) -> None:
    with pytest.raises(ShareError, match="DISPLAY"):
        display_number(display)
