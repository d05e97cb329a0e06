"""The properties-file parser, rule by rule."""

from __future__ import annotations

import pytest

from qvd.config import ConfigSyntaxError
from qvd.config.properties import parse_properties


def pairs(text: str) -> list[tuple[str, str]]:
    return [(e.key, e.value) for e in parse_properties(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = b\n", [("a", "b")]),
        ("a=b", [("a", "b")]),
        ("a:b", [("a", "b")]),
        ("a b", [("a", "b")]),
        ("   a   =   b c  \n", [("a", "b c")]),
        ("a =\n", [("a", "")]),
        ("a\n", [("a", "")]),
        ("# comment\n! also\n\n   \na=1\n", [("a", "1")]),
        ("a = 1\na = 2\n", [("a", "1"), ("a", "2")]),
        ("a = x=y:z\n", [("a", "x=y:z")]),
        ("a\\=b = c\n", [("a=b", "c")]),
        ("a = one \\\n     two\n", [("a", "one two")]),
        ("a = \\\\\n", [("a", "\\")]),
        ("a = tab\\there\n", [("a", "tab\there")]),
        ("a = \\u00e9t\\u00E9\n", [("a", "été")]),
        ("a = keep\\ \n", [("a", "keep ")]),
        ("a = p@ss:w/rd#1\n", [("a", "p@ss:w/rd#1")]),
        ("a = 1\r\nb = 2\r\n", [("a", "1"), ("b", "2")]),
    ],
)
def test_rules(text: str, expected: list[tuple[str, str]]) -> None:
    assert pairs(text) == expected


def test_trailing_blanks_of_a_password_are_dropped() -> None:
    # QVD's installer broke on an invisible trailing space after a password
    assert pairs("database.password = secret   \t\n") == [("database.password", "secret")]


def test_line_numbers_point_at_the_first_physical_line() -> None:
    entries = parse_properties("# c\n\na = 1 \\\n  2\nb = 3\n")
    assert [(e.key, e.line) for e in entries] == [("a", 3), ("b", 5)]


def test_os_specific_keys_carry_their_selector() -> None:
    (entry,) = parse_properties("@debian-12@path.run = /run/qvd\n")
    assert (entry.key, entry.value, entry.os_selector) == ("path.run", "/run/qvd", "debian-12")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("a = 1\nb = 2 \\", 2, "continuation line is missing"),
        ("a = 1\nb = \\u12x4\n", 2, "malformed \\u escape"),
        ("ok = 1\n = value\n", 2, "no key before the separator"),
        ("@debian-12 = x\n", 1, "OS-specific key"),
    ],
)
def test_errors_name_file_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigSyntaxError) as info:
        parse_properties(text, source="/etc/qvd/node.conf")
    assert info.value.source == "/etc/qvd/node.conf"
    assert info.value.line == line
    assert reason in info.value.reason
    assert str(info.value).startswith(f"/etc/qvd/node.conf:{line}: ")
