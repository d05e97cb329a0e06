"""Where ``qa`` finds the API and the credentials: flags, then ``$QA_CONFIG`` or
``~/.config/qvd/qa.conf``, ``~/.qvd/qa.conf``, ``/etc/qvd/qa.conf`` (first found),
then defaults. The files use ``key = value`` lines: ``qa.url``, ``qa.login``,
``qa.password``, ``qa.tenant``, ``qa.format`` (table, csv, json), ``qa.insecure``
(1 skips certificate checks), ``qa.ca`` (a CA or certificate file), ``qa.block`` (rows
per page), ``qa.force`` (1: never ask before deleting or changing every object)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["QaSettings", "config_paths", "load_settings"]

DEFAULT_URL = "https://127.0.0.1:8444/"


@dataclass(frozen=True, slots=True, kw_only=True)
class QaSettings:
    url: str = DEFAULT_URL
    login: str | None = None
    password: str | None = None
    tenant: str | None = None
    format: str = "table"
    insecure: bool = False
    ca: str | None = None
    block: int = 25
    force: bool = False


def config_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if environ is None else environ
    if env.get("QA_CONFIG"):
        return [Path(env["QA_CONFIG"])]
    home = Path(env.get("HOME", "~")).expanduser()
    return [home / ".config/qvd/qa.conf", home / ".qvd/qa.conf", Path("/etc/qvd/qa.conf")]


def _read(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, _, value = line.partition(":")
        values[key.strip()] = value.strip()
    return values


def load_settings(
    overrides: Mapping[str, str | None], environ: Mapping[str, str] | None = None
) -> QaSettings:
    """Settings from the first config file found, with flags (``overrides``) on top."""
    values: dict[str, str] = {}
    for path in config_paths(environ):
        if path.is_file():
            values = {k.removeprefix("qa."): v for k, v in _read(path).items()}
            break
    for key, value in overrides.items():
        if value is not None:
            values[key] = value
    return QaSettings(
        url=values.get("url") or DEFAULT_URL,
        login=values.get("login") or None,
        password=values.get("password") or None,
        tenant=values.get("tenant") or None,
        format=(values.get("format") or "table").lower(),
        insecure=_true(values.get("insecure")),
        ca=values.get("ca") or None,
        block=int(values.get("block") or 25),
        force=_true(values.get("force")),
    )


def _true(value: str | None) -> bool:
    return (value or "0").strip().lower() in {"1", "true", "yes", "on"}
