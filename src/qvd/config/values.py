"""Reading token text as typed values. Pure functions, each raising ``ValueError``
with a sentence that says what was expected."""

from __future__ import annotations

from qvd.config.tokens import Kind

__all__ = ["check_value", "parse_bool", "parse_list"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def parse_bool(text: str) -> bool:
    """QVD writes booleans as 1/0; the usual words are accepted too."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use 1 or 0)")


def parse_list(text: str) -> list[str]:
    """Comma-separated items, blanks around them dropped, empty items skipped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def check_value(kind: Kind, text: str) -> None:
    """Raise ``ValueError`` if ``text`` cannot be read as ``kind``."""
    if kind is Kind.INT:
        try:
            int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    elif kind is Kind.FLOAT:
        try:
            float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    elif kind is Kind.BOOL:
        parse_bool(text)
