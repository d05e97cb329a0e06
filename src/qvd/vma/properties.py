"""A small reader for Java-properties files (the format of ``/etc/qvd/vma.conf``).

Supports ``key = value``, ``key: value`` and ``key value``, ``#``/``!`` comments,
backslash line continuations and the escapes ``\\t \\n \\r \\f \\\\ \\uXXXX``.
Later lines win. Errors carry the line number.
"""

from __future__ import annotations

__all__ = ["PropertiesError", "parse_properties"]

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


class PropertiesError(ValueError):
    """A malformed line: ``line`` is 1-based."""

    def __init__(self, message: str, line: int) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


def _unescape(text: str, line: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise PropertiesError(f"bad unicode escape {text[i : i + 6]!r}", line)
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _ends_with_continuation(text: str) -> bool:
    count = len(text) - len(text.rstrip("\\"))
    return count % 2 == 1


def _split(logical: str) -> tuple[str, str]:
    i = 0
    while i < len(logical):
        ch = logical[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "=: \t":
            break
        i += 1
    key = logical[:i]
    rest = logical[i:].lstrip(" \t")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t")
    return key, rest


def parse_properties(text: str) -> dict[str, str]:
    """Parse properties text into a dict (later duplicates win)."""
    result: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        start = index + 1
        raw = lines[index].lstrip(" \t\f")
        index += 1
        if not raw or raw[0] in "#!":
            continue
        logical = raw
        while _ends_with_continuation(logical):
            logical = logical[:-1]
            if index >= len(lines):
                break
            logical += lines[index].lstrip(" \t\f")
            index += 1
        key, value = _split(logical)
        key = _unescape(key, start)
        if not key:
            raise PropertiesError("missing key", start)
        result[key] = _unescape(value.rstrip(" \t"), start)
    return result
