"""The one Java-properties parser of the project: the VMA reads ``/etc/qvd/vma.conf``
with it, and ``qvd.config`` reads ``node.conf`` with it (standard library only, so that
the VMA inside an image needs nothing else of qvd).

Pure: it takes text and returns entries, each with the line it came from. Rules
(java.util.Properties):

- ``#`` or ``!`` as the first non-blank character starts a comment line.
- The key ends at the first unescaped ``=``, ``:`` or blank; blanks and one ``=``/``:``
  around the separator are skipped.
- A line ending in an odd number of backslashes continues on the next line, whose
  leading blanks are dropped.
- Escapes ``\\t \\n \\r \\f \\uXXXX``; any other escaped character stands for itself.
- Trailing blanks of a value are dropped (QVD installs broke on an unseen trailing
  space after a password); write ``\\ `` to keep one.

Errors are :class:`PropertiesError` with the 1-based line and the reason; ``qvd.config``
adds the file name. QVD's ``@os-version@key`` prefix is left in the key: only
``qvd.config`` gives it a meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PropertiesError", "PropertyEntry", "parse_properties", "read_properties"]

_BLANKS = " \t\f"
_SEPARATORS = "=:"
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


class PropertiesError(ValueError):
    """A line that cannot be parsed: ``line`` is 1-based, ``reason`` says why."""

    def __init__(self, reason: str, line: int) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PropertyEntry:
    """One ``key = value`` of a properties file, and the line it starts on."""

    key: str
    value: str
    line: int


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continued lines; return (first line number, joined text) pairs."""
    out: list[tuple[int, str]] = []
    physical = text.splitlines()
    i = 0
    while i < len(physical):
        start = i + 1
        line = physical[i].lstrip(_BLANKS)
        i += 1
        if not line or line[0] in "#!":
            continue
        while _ends_with_continuation(line):
            line = line[:-1]
            if i >= len(physical):
                raise PropertiesError(
                    "the last line ends with a backslash: a continuation line is missing", start
                )
            line += physical[i].lstrip(_BLANKS)
            i += 1
        out.append((start, line))
    return out


def _ends_with_continuation(line: str) -> bool:
    count = len(line) - len(line.rstrip("\\"))
    return count % 2 == 1


def _unescape(raw: str, line: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(raw):
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt == "u":
            digits = raw[i + 2 : i + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise PropertiesError(
                    f"malformed \\u escape {raw[i : i + 6]!r}: it needs four hex digits", line
                )
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_SIMPLE_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _split_key(logical: str) -> tuple[str, str]:
    """Split a logical line into raw key and raw value (both still escaped)."""
    i = 0
    while i < len(logical):
        ch = logical[i]
        if ch == "\\":
            i += 2
            continue
        if ch in _SEPARATORS or ch in _BLANKS:
            break
        i += 1
    key = logical[:i]
    rest = logical[i:].lstrip(_BLANKS)
    if rest and rest[0] in _SEPARATORS:
        rest = rest[1:].lstrip(_BLANKS)
    return key, rest


def _strip_trailing_blanks(raw_value: str) -> str:
    stripped = raw_value.rstrip(_BLANKS)
    # keep one blank that was escaped: "a\ " -> the backslash must stay with its blank
    if len(stripped) < len(raw_value) and _ends_with_continuation(stripped):
        return stripped + raw_value[len(stripped)]
    return stripped


def read_properties(text: str) -> list[PropertyEntry]:
    """Parse properties text into entries in file order (later entries win)."""
    entries: list[PropertyEntry] = []
    for number, logical in _logical_lines(text):
        raw_key, raw_value = _split_key(logical)
        key = _unescape(raw_key, number)
        if not key:
            raise PropertiesError(
                f"missing key: no key before the separator in {logical.strip()!r}", number
            )
        value = _unescape(_strip_trailing_blanks(raw_value), number)
        entries.append(PropertyEntry(key=key, value=value, line=number))
    return entries


def parse_properties(text: str) -> dict[str, str]:
    """Parse properties text into a dict (later duplicates win)."""
    return {entry.key: entry.value for entry in read_properties(text)}
