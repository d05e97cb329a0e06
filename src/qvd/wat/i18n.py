"""The WAT's two languages (the original's): English, the language of the templates and
code, and Spanish from ``i18n/es/*.json`` (one file per area: English text → Spanish).

Templates say ``{{ _("Virtual machines") }}``; code says ``page.t("…")``. A text with no
Spanish entry shows in English (the test ``tests/wat/test_i18n.py`` lists every text the
templates and pages use and fails on any without one)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

__all__ = ["LANGUAGES", "Translator", "catalogue", "choose_language", "translator"]

LANGUAGES = ("en", "es")
_HERE = Path(__file__).parent / "i18n"

Translator = Callable[[str], str]


@functools.cache
def catalogue(lang: str) -> dict[str, str]:
    """English text → ``lang`` text, merged from every area's file."""
    merged: dict[str, str] = {}
    for path in sorted((_HERE / lang).glob("*.json")):
        entries = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entries, dict):
            raise ValueError(f"{path}: a JSON object of English text → translation")
        merged.update({str(k): str(v) for k, v in entries.items()})
    return merged


def translator(lang: str) -> Translator:
    """``_`` for ``lang``: English is the identity."""
    if lang == "en":
        return _identity
    table = catalogue(lang)
    return lambda text: table.get(text, text)


def _identity(text: str) -> str:
    return text


def choose_language(admin: str | None, tenant: str | None, accept: str | None) -> str:
    """The language to show: the administrator's own, else the tenant's, else the
    browser's first of ours (``Accept-Language``), else English. ``auto`` and
    ``default`` defer to the next."""
    for choice in (admin, tenant):
        if choice in LANGUAGES:
            return choice
    for part in (accept or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"
