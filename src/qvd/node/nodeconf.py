"""Writing ``node.conf``: settings merged into the file, every value checked and
escaped, the file replaced atomically with mode 0600 (it holds the database password).

Values are never spliced raw into the file: each key must be a known token name, each
value one line of printable text (``qvd.config.names.CONFIG_VALUE``), escaped for the
properties syntax, and the written text is read back and compared before it replaces
the old file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from qvd.config.names import CONFIG_KEY, CONFIG_VALUE
from qvd.config.tokens import lookup
from qvd.vma.properties import PropertiesError, parse_properties

__all__ = ["NodeConfError", "escape_value", "merge_node_conf", "render_node_conf"]


class NodeConfError(ValueError):
    """A setting that cannot be written (the message names the key, never the value)."""


def escape_value(value: str) -> str:
    """``value`` in the properties syntax (backslashes, tabs, blanks at either end)."""
    out = value.replace("\\", "\\\\").replace("\t", "\\t")
    if out.startswith(" "):
        out = "\\" + out
    if out.endswith(" ") and len(value) > 1:  # the parser drops trailing blanks unless escaped
        out = out[:-1] + "\\ "
    return out


def _check(key: str, value: str, *, kept: bool = False) -> None:
    if kept:  # a line of the file we merge into (an @os-version@ key, say): re-written as is
        if not key or any(ch in key for ch in " \t\f=:\\#!") or not key.isprintable():
            raise NodeConfError(f"{key!r}: a key of the existing file cannot be re-written")
    else:
        CONFIG_KEY.check(key)
        if lookup(key) is None:
            raise NodeConfError(f"{key}: not a configuration token")
    try:
        CONFIG_VALUE.check(value)
    except ValueError:
        raise NodeConfError(f"{key}: its value is not one line of printable text") from None


def render_node_conf(
    settings: Mapping[str, str], *, header: str, kept: Mapping[str, str] | None = None
) -> str:
    """The file's text: ``kept`` (lines of the file merged into) then ``settings``."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key, value in (kept or {}).items():
        _check(key, value, kept=True)
        lines.append(f"{key} = {escape_value(value)}")
    for key, value in settings.items():
        _check(key, value)
        lines.append(f"{key} = {escape_value(value)}")
    text = "\n".join(lines) + "\n"
    try:
        back = parse_properties(text)
    except PropertiesError as exc:  # pragma: no cover - escape_value makes this impossible
        raise NodeConfError(f"the rendered configuration does not parse: {exc}") from None
    if back != {**(kept or {}), **settings}:
        raise NodeConfError("the rendered configuration does not read back as written")
    return text


def merge_node_conf(path: Path, settings: Mapping[str, str], *, header: str) -> None:
    """Write ``settings`` into ``path`` over what it had (other keys kept; comments are
    not), atomically, mode 0600, owned by the caller."""
    existing: dict[str, str] = {}
    if path.exists():
        try:
            existing = parse_properties(path.read_text())
        except PropertiesError as exc:
            raise NodeConfError(f"{path}: cannot read it to merge into it: {exc}") from None
    kept = {k: v for k, v in existing.items() if k not in settings}
    text = render_node_conf(settings, header=header, kept=kept)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".node.conf.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
