"""QVD's SimpleRPC encoding (reference §4.1), both directions, without I/O.

Request: ``GET /vma/<method>?k=v&k=v`` (repeated keys allowed); we also accept the same
pairs as an ``application/x-www-form-urlencoded`` POST body, so that nothing sensitive
needs to travel in a URL. Response: 200 with ``Content-Type: application/json-simplerpc``
and the JSON of the result as body; on failure the body is ``"",<JSON error string>``.
A caller parses ``[<body>]``: one element is a result, two are an error.
"""

from __future__ import annotations

import json
import urllib.parse

__all__ = [
    "CONTENT_TYPE",
    "PATH_PREFIX",
    "RemoteError",
    "decode_response",
    "encode_error",
    "encode_result",
    "parse_params",
    "parse_target",
]

CONTENT_TYPE = "application/json-simplerpc"
PATH_PREFIX = "/vma/"


class RemoteError(Exception):
    """The peer answered with a SimpleRPC error (``message`` is its text)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def parse_params(query: str) -> dict[str, list[str]]:
    """URL-encoded pairs into name → values (order kept, blanks kept)."""
    found: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        found.setdefault(key, []).append(value)
    return found


def parse_target(target: str) -> tuple[str, dict[str, list[str]]] | None:
    """``/vma/<method>?query`` → (method, params); None if not a SimpleRPC path."""
    path, _, query = target.partition("?")
    if not path.startswith(PATH_PREFIX):
        return None
    method = path[len(PATH_PREFIX) :]
    if not method or "/" in method:
        return None
    return method, parse_params(query)


def encode_result(value: object) -> bytes:
    return json.dumps(value).encode()


def encode_error(message: str) -> bytes:
    return b'"",' + json.dumps(message).encode()


def decode_response(body: bytes) -> object:
    """The result in a SimpleRPC body; raises ``RemoteError`` for an error body."""
    text = body.decode("utf-8").strip()
    try:
        items = json.loads(f"[{text}]")
    except ValueError:
        raise RemoteError(f"malformed SimpleRPC body: {text[:80]!r}") from None
    if not isinstance(items, list) or len(items) not in (1, 2):
        raise RemoteError(f"malformed SimpleRPC body: {text[:80]!r}")
    if len(items) == 2:
        return_error = items[1]
        raise RemoteError(str(return_error))
    return items[0]
