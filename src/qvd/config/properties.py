"""A parser for Java-properties files, the format of QVD's ``node.conf``.

Pure: it takes text and returns entries, each with the line it came from, so later
stages can say where a bad value was written. Rules (java.util.Properties, plus two
QVD habits):

- ``#`` or ``!`` as the first non-blank character starts a comment line.
- The key ends at the first unescaped ``=``, ``:`` or blank; blanks and one ``=``/``:``
  around the separator are skipped.
- A line ending in an odd number of backslashes continues on the next line, whose
  leading blanks are dropped.
- Escapes ``\\t \\n \\r \\f \\uXXXX``; any other escaped character stands for itself.
- Trailing blanks of a value are dropped (QVD installs broke on an unseen trailing
  space after a password); write ``\\ `` to keep one.
- ``@os-version@key = value`` applies only on that OS (QVD's OS-specific defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

from qvd.config.errors import ConfigSyntaxError

__all__ = ["PropertyEntry", "parse_properties"]

_BLANKS = " \t\f"
_SEPARATORS = "=:"
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


@dataclass(frozen=True, slots=True, kw_only=True)
class PropertyEntry:
    """One ``key = value`` of a properties file."""

    key: str
    value: str
    line: int
    os_selector: str | None = None


def _logical_lines(text: str, source: str) -> list[tuple[int, str]]:
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
                raise ConfigSyntaxError(
                    "the last line ends with a backslash: a continuation line is missing",
                    source=source,
                    line=start,
                )
            line += physical[i].lstrip(_BLANKS)
            i += 1
        out.append((start, line))
    return out


def _ends_with_continuation(line: str) -> bool:
    count = len(line) - len(line.rstrip("\\"))
    return count % 2 == 1


def _unescape(raw: str, source: str, line: int) -> str:
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
                raise ConfigSyntaxError(
                    f"malformed \\u escape {raw[i : i + 6]!r}: it needs four hex digits",
                    source=source,
                    line=line,
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


def parse_properties(text: str, *, source: str = "<string>") -> list[PropertyEntry]:
    """Parse properties text into entries in file order (later entries win)."""
    entries: list[PropertyEntry] = []
    for number, logical in _logical_lines(text, source):
        raw_key, raw_value = _split_key(logical)
        key = _unescape(raw_key, source, number)
        if not key:
            raise ConfigSyntaxError(
                f"no key before the separator in {logical.strip()!r}", source=source, line=number
            )
        os_selector: str | None = None
        if key.startswith("@"):
            selector, sep, rest = key[1:].partition("@")
            if not sep or not selector or not rest:
                raise ConfigSyntaxError(
                    f"{key!r}: an OS-specific key is written '@<os>-<version>@<key>'",
                    source=source,
                    line=number,
                )
            os_selector, key = selector, rest
        value = _unescape(_strip_trailing_blanks(raw_value), source, number)
        entries.append(PropertyEntry(key=key, value=value, line=number, os_selector=os_selector))
    return entries
