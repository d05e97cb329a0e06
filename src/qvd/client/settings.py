"""The remembered host, port and user (``~/.config/qvd/client.conf``, key = value)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["config_path", "load", "save"]


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "qvd" / "client.conf"


def load(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return values
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def save(values: dict[str, str], path: Path | None = None) -> None:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} = {v}\n" for k, v in sorted(values.items())), encoding="utf-8")
