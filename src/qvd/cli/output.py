"""Showing replies: a table (default), CSV or JSON; errors on stderr."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, TextIO

from qvd.cli.client import ApiReply

__all__ = ["FORMATS", "render", "render_error"]

FORMATS = ("table", "csv", "json")


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _defuse(text: str) -> str:
    """A CSV cell a spreadsheet never reads as a formula (a ``'`` in front); numbers,
    negative ones included, are left as they are."""
    if not text.startswith(_FORMULA):
        return text
    try:
        float(text)
    except ValueError:
        return "'" + text
    return text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return _named(value)
    return str(value)


def _named(value: dict[str, Any]) -> str:
    """QVD's nested shapes by name: ``{id: name}`` and ``{id: {name: …}}`` (roles) as
    their names, ``{positive, negative}`` (a role's ACLs) as the held ones; any other
    object as JSON."""
    items = list(value.values())
    if items and all(isinstance(v, str) for v in items):
        return ",".join(items)
    if items and all(isinstance(v, dict) and "name" in v for v in items):
        return ",".join(_cell(v["name"]) for v in items)
    if set(value) == {"positive", "negative"}:
        return _cell(value["positive"])
    return json.dumps(value, sort_keys=True)


def render(
    reply: ApiReply,
    columns: list[str],
    fmt: str,
    out: TextIO,
    *,
    listing: bool,
    footer: str | None = None,
) -> None:
    """Print a successful reply (a table ends with ``footer``, by default the total)."""
    if fmt == "json":
        body = {
            "status": reply.status,
            "message": reply.message,
            "total": reply.total,
            "rows": reply.rows,
            **reply.extra,
        }
        json.dump(body, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
        return
    if not listing:
        ids = [str(r["id"]) for r in reply.rows if isinstance(r, dict) and "id" in r]
        out.write(f"{reply.message or 'done'}" + (f" (id {', '.join(ids)})" if ids else "") + "\n")
        return
    cols = columns or sorted({k for r in reply.rows for k in r})
    rows = [[_cell(r.get(c)) for c in cols] for r in reply.rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows([[_defuse(v) for v in r] for r in rows])
        out.write(buf.getvalue())
        return
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out.write(line + "\n")
    out.write("|" + "|".join(f" {c:<{w}} " for c, w in zip(cols, widths, strict=True)) + "|\n")
    out.write(line + "\n")
    for r in rows:
        out.write("|" + "|".join(f" {v:<{w}} " for v, w in zip(r, widths, strict=True)) + "|\n")
    out.write(line + "\n")
    total = reply.total if reply.total is not None else len(reply.rows)
    out.write(f"{footer or f'Total: {total}'}\n")


def render_error(reply: ApiReply, err: TextIO) -> None:
    err.write(f"qa: error {reply.status}: {reply.message}\n")
    for object_id, failure in sorted(reply.failures.items()):
        err.write(f"  {object_id}: error {failure.get('status')}: {failure.get('message')}\n")
