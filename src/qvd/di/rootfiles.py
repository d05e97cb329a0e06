"""Writing into an image's root from the host: always a new file, never through a link.

The root being built holds links meant for the image (``etc/resolv.conf`` ->
``/run/...``); followed from the host, an absolute one points at the host's own file.
So every file the builder writes into a root replaces what is there instead of
opening it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["replace_file", "replace_symlink"]


def _clear(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()


def replace_file(path: Path, text: str, mode: int = 0o644) -> None:
    """``path`` becomes a new regular file holding ``text`` (what was there goes)."""
    _clear(path)
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(text)
    path.chmod(mode)


def replace_symlink(path: Path, target: str) -> None:
    """``path`` becomes a symbolic link to ``target`` (what was there goes)."""
    _clear(path)
    path.symlink_to(target)
