"""CSV export of a list: every row the search, filters and sort select (the action
paged through in chunks), the shown columns, values as text. A cell that a spreadsheet
would read as a formula (``= + - @``, tab, carriage return first) gets a ``'`` in
front (CSV formula injection)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from qvd.wat.lists.model import Column, ListView
from qvd.wat.lists.query import ListQuery
from qvd.wat.port import Answer

if TYPE_CHECKING:
    from qvd.wat.web import Page

__all__ = ["CHUNK", "MAX_ROWS", "cell_text", "csv_chunks", "csv_lines", "defuse"]

CHUNK = 2000
MAX_ROWS = 1_000_000
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def defuse(text: str) -> str:
    """``text`` safe to open in a spreadsheet: never read as a formula."""
    return "'" + text if text.startswith(_FORMULA) else text


def cell_text(value: Any) -> str:
    """One value as CSV text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return defuse(json.dumps(value, ensure_ascii=False, sort_keys=True, default=str))
    return defuse(str(value))


def csv_lines(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` as CSV text (CRLF line ends)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def fetch(
    view: ListView, page: Page, query: ListQuery, fields: Sequence[str], offset: int
) -> Answer:
    """One chunk of rows from ``offset`` (ties broken by id: stable paging)."""
    order = query.order(view)
    if all(name != "id" for name, _ in order):
        order.append(("id", False))
    return page.call(
        view.list_action,
        filters=query.filters(view, page) or None,
        fields=list(fields),
        order_by=order,
        limit=CHUNK,
        offset=offset,
        count=False,
    )


def csv_chunks(
    view: ListView, page: Page, query: ListQuery, columns: Sequence[Column], first: Answer
) -> Iterator[str]:
    """The CSV text, one piece per chunk: the header, ``first`` (the chunk already
    fetched, so a refusal shows before the download starts), then the following ones."""
    fields = sorted({"id", *(c.field for c in columns)})
    yield csv_lines([[page.t(c.label) for c in columns]])
    answer, offset = first, 0
    while True:
        yield csv_lines([[cell_text(row.get(c.field)) for c in columns] for row in answer.rows])
        offset += len(answer.rows)
        if len(answer.rows) < CHUNK or offset >= MAX_ROWS:
            return
        answer = fetch(view, page, query, fields, offset)
