"""Just enough IPP (RFC 8010) to ask a CUPS server for its printers: a request encoder
and a response decoder, pure (bytes in, values out; no socket).

The answer comes from the client's CUPS through the NX printing channel, so it is
hostile input: every length is checked against the buffer, sizes are capped, and any
malformed message raises ``IppError`` instead of yielding half a list.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "CUPS_GET_DEFAULT",
    "CUPS_GET_PRINTERS",
    "IppError",
    "IppResponse",
    "decode_response",
    "encode_request",
]

CUPS_GET_DEFAULT = 0x4001
CUPS_GET_PRINTERS = 0x4002

_END = 0x03
_OPERATION_GROUP = 0x01
_GROUP_TAGS = frozenset(range(0x00, 0x10))  # delimiter tags
_KEYWORD = 0x44
_CHARSET = 0x47
_LANGUAGE = 0x48
_MAX_MESSAGE = 1 << 20  # a printer list is a few KiB; more is someone's attack
_MAX_VALUES = 4096


class IppError(ValueError):
    """A malformed or oversized IPP message."""


@dataclass(frozen=True, slots=True)
class IppResponse:
    """A decoded response: its status and the values of its attribute groups, in order
    (``groups`` holds (group tag, {name: [value, ...]}); text values are str, others
    bytes)."""

    status: int
    request_id: int
    groups: list[tuple[int, dict[str, list[str | bytes]]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status < 0x0100  # successful-ok and its variants

    def values(self, group_tag: int, name: str) -> list[list[str | bytes]]:
        """``name``'s values in every group tagged ``group_tag`` (one list per group)."""
        return [attrs.get(name, []) for tag, attrs in self.groups if tag == group_tag]


def _attribute(tag: int, name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode("ascii"), value.encode("utf-8")
    return (
        struct.pack(">BH", tag, len(name_bytes)) + name_bytes
        + struct.pack(">H", len(value_bytes)) + value_bytes
    )  # fmt: skip


def encode_request(operation: int, request_id: int, requested: list[str] | None = None) -> bytes:
    """An IPP/2.0 request with the operation attributes every request carries (charset,
    language) and ``requested-attributes`` when given."""
    body = struct.pack(">BBHI", 2, 0, operation, request_id) + bytes([_OPERATION_GROUP])
    body += _attribute(_CHARSET, "attributes-charset", "utf-8")
    body += _attribute(_LANGUAGE, "attributes-natural-language", "en")
    for index, name in enumerate(requested or []):
        body += _attribute(_KEYWORD, "requested-attributes" if index == 0 else "", name)
    return body + bytes([_END])


_TEXT_TAGS = frozenset({0x41, 0x42, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49})


def _text(tag: int, raw: bytes) -> str | bytes:
    if tag in _TEXT_TAGS:
        return raw.decode("utf-8", errors="replace")
    return raw


def decode_response(data: bytes) -> IppResponse:
    """The response in ``data`` (the whole HTTP body); IppError if it is malformed."""
    if len(data) > _MAX_MESSAGE:
        raise IppError(f"IPP response of {len(data)} bytes (more than {_MAX_MESSAGE})")
    if len(data) < 9:
        raise IppError("IPP response shorter than its header")
    major, _minor, status, request_id = struct.unpack_from(">BBHI", data, 0)
    if major not in (1, 2):
        raise IppError(f"IPP version {major} is not supported")
    groups: list[tuple[int, dict[str, list[str | bytes]]]] = []
    current: dict[str, list[str | bytes]] | None = None
    last: list[str | bytes] | None = None
    count = 0
    pos = 8
    while True:
        if pos >= len(data):
            raise IppError("IPP response without its end tag")
        tag = data[pos]
        pos += 1
        if tag == _END:
            break
        if tag in _GROUP_TAGS:
            current, last = {}, None
            groups.append((tag, current))
            continue
        if current is None:
            raise IppError("IPP attribute outside an attribute group")
        if pos + 2 > len(data):
            raise IppError("IPP attribute name cut short")
        (name_length,) = struct.unpack_from(">H", data, pos)
        pos += 2
        name = data[pos : pos + name_length]
        pos += name_length
        if pos + 2 > len(data):
            raise IppError("IPP attribute value cut short")
        (value_length,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + value_length > len(data):
            raise IppError("IPP attribute value cut short")
        value = _text(tag, data[pos : pos + value_length])
        pos += value_length
        count += 1
        if count > _MAX_VALUES:
            raise IppError(f"IPP response with more than {_MAX_VALUES} values")
        if name_length:
            last = current.setdefault(name.decode("utf-8", errors="replace"), [])
        elif last is None:
            raise IppError("IPP additional value without an attribute")
        last.append(value)
    return IppResponse(status=status, request_id=request_id, groups=groups)
