"""Which mirror a build uses: found in apt's sources (deb822 and one-line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.di import BuildError
from qvd.di.mirror import find_mirror, parse_deb822_sources, parse_one_line_sources

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
"""


def test_deb822_and_one_line_sources(tmp_path: Path) -> None:
    assert parse_deb822_sources(DEB822) == [
        ("http://deb.debian.org/debian", ["bookworm", "bookworm-updates"]),
        ("http://deb.debian.org/debian-security", ["bookworm-security"]),
    ]
    assert parse_one_line_sources(
        "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n"
        "deb-src http://s/debian bookworm main\n"
    ) == [("http://m.example/debian", ["bookworm"])]
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert find_mirror("bookworm", tmp_path) == "http://deb.debian.org/debian"
    with pytest.raises(BuildError, match="no apt source for suite 'trixie'"):
        find_mirror("trixie", tmp_path)


def test_this_machines_mirror_is_found() -> None:
    assert find_mirror("bookworm").startswith("http")
