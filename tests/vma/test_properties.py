"""The VMA's Java-properties reader."""

from __future__ import annotations

import pytest

from qvd.vma.properties import PropertiesError, parse_properties, read_properties


def test_separators_comments_and_later_lines_winning() -> None:
    text = "# comment\n! also\na = 1\nb: two\nc three\n  d=4  \na=5\n"
    assert parse_properties(text) == {"a": "5", "b": "two", "c": "three", "d": "4"}


def test_continuations_and_escapes() -> None:
    text = "long = one \\\n      two\nesc = tab\\there\\u00e9\nkey\\ with\\ space = x\n"
    assert parse_properties(text) == {
        "long": "one two",
        "esc": "tab\there\u00e9",
        "key with space": "x",
    }


def test_empty_values_and_errors() -> None:
    assert parse_properties("a =\n") == {"a": ""}
    with pytest.raises(PropertiesError, match="line 2"):
        parse_properties("ok = 1\nbad = \\u12\n")
    with pytest.raises(PropertiesError, match="missing key"):
        parse_properties("= value\n")


def test_one_parser_for_vma_conf_and_node_conf() -> None:
    from qvd.config.properties import parse_properties as node_conf

    text = "# c\na = one \\\n  two\nkeep = x\\ \nb\\=c : \\u00e9\n"
    entries = read_properties(text)
    assert [(e.key, e.value, e.line) for e in entries] == [
        ("a", "one two", 2),
        ("keep", "x ", 4),
        ("b=c", "é", 5),
    ]
    assert [(e.key, e.value, e.line) for e in node_conf(text)] == [
        (e.key, e.value, e.line) for e in entries
    ]


def test_a_missing_continuation_line_is_an_error() -> None:
    with pytest.raises(PropertiesError, match="continuation line is missing") as info:
        read_properties("a = 1\nb = 2 \\")
    assert info.value.line == 2
