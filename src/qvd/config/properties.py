"""Reading QVD's ``node.conf``: the project's one Java-properties parser
(:mod:`qvd.vma.properties`, standard library only, shared with the VMA) plus QVD's
``@os-version@key = value`` habit (a key that applies only on that OS) and errors that
name the file, the line and the reason (:class:`~qvd.config.errors.ConfigSyntaxError`).
"""

from __future__ import annotations

from dataclasses import dataclass

from qvd.config.errors import ConfigSyntaxError
from qvd.vma.properties import PropertiesError, read_properties

__all__ = ["PropertyEntry", "parse_properties"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PropertyEntry:
    """One ``key = value`` of a properties file."""

    key: str
    value: str
    line: int
    os_selector: str | None = None


def parse_properties(text: str, *, source: str = "<string>") -> list[PropertyEntry]:
    """Parse properties text into entries in file order (later entries win)."""
    try:
        raw = read_properties(text)
    except PropertiesError as exc:
        raise ConfigSyntaxError(exc.reason, source=source, line=exc.line) from None
    entries: list[PropertyEntry] = []
    for entry in raw:
        key, os_selector = entry.key, None
        if key.startswith("@"):
            selector, sep, rest = key[1:].partition("@")
            if not sep or not selector or not rest:
                raise ConfigSyntaxError(
                    f"{key!r}: an OS-specific key is written '@<os>-<version>@<key>'",
                    source=source,
                    line=entry.line,
                )
            key, os_selector = rest, selector
        entries.append(
            PropertyEntry(key=key, value=entry.value, line=entry.line, os_selector=os_selector)
        )
    return entries
