"""Which Debian mirror to bootstrap from: the one apt on this machine is configured with.

Reads deb822 ``*.sources`` files (``/etc/apt/sources.list.d/``) and one-line
``sources.list`` entries, and picks the first ``deb`` source that carries the suite.
"""

from __future__ import annotations

from pathlib import Path

from qvd.di.errors import BuildError

__all__ = ["DEFAULT_APT_DIR", "find_mirror", "parse_deb822_sources", "parse_one_line_sources"]

DEFAULT_APT_DIR = Path("/etc/apt")


def parse_deb822_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every ``Types: deb`` stanza, in file order."""
    found: list[tuple[str, list[str]]] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        found.extend((uri, suites) for uri in fields.get("uris", "").split())
    return found


def parse_one_line_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, [suite]) of every ``deb`` line of a classic sources.list."""
    found: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            found.append((words[0], [words[1]]))
    return found


def find_mirror(suite: str, apt_dir: Path = DEFAULT_APT_DIR) -> str:
    """The URI of the first configured ``deb`` source carrying ``suite``."""
    candidates: list[tuple[str, list[str]]] = []
    listing = apt_dir / "sources.list"
    if listing.is_file():
        candidates += parse_one_line_sources(listing.read_text(encoding="utf-8"))
    folder = apt_dir / "sources.list.d"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix == ".sources":
                candidates += parse_deb822_sources(path.read_text(encoding="utf-8"))
            elif path.suffix == ".list":
                candidates += parse_one_line_sources(path.read_text(encoding="utf-8"))
    for uri, suites in candidates:
        if suite in suites:
            return uri
    raise BuildError("bootstrap", f"no apt source for suite {suite!r} under {apt_dir}")
