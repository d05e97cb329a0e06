"""A list's query string, parsed and bounded (:class:`ListQuery`), and the QVD filters
and order it means."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qvd.wat.lists.model import Column, ListView

if TYPE_CHECKING:
    from qvd.wat.web import Page

__all__ = ["FILTER_PREFIX", "MAX_FILTER", "MAX_SEARCH", "ListQuery", "like_pattern"]

MAX_SEARCH = 200
MAX_FILTER = 200
FILTER_PREFIX = "f."


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's own characters escaped."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _clean(value: str, limit: int) -> str:
    return "".join(ch for ch in value[:limit] if ch.isprintable()).strip()


@dataclass(slots=True)
class ListQuery:
    """``q`` (free text), ``sort`` (a field, ``-`` in front for descending), ``page``
    (from 1) and ``columns`` (``f.<field>=value``: per-column filters, only of columns
    that offer one; unknown fields and choices dropped)."""

    q: str = ""
    sort: str = ""
    page: int = 1
    columns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(
        cls, params: Mapping[str, str], view: ListView, shown: Sequence[Column] | None = None
    ) -> ListQuery:
        """``params`` checked against ``view`` (``shown``: the columns the administrator
        may see; all of the view's when None)."""
        q = _clean(params.get("q", ""), MAX_SEARCH)
        sort = params.get("sort", "")
        usable = list(view.columns if shown is None else shown)
        names = {c.field for c in usable if c.sortable}
        if sort.lstrip("-") not in names or sort.count("-") > 1:
            sort = ""
        raw = params.get("p", "1")
        number = int(raw) if raw.isdigit() and len(raw) < 7 else 1
        filters: dict[str, str] = {}
        for column in usable:
            kind = column.filter_kind
            value = _clean(params.get(FILTER_PREFIX + column.field, ""), MAX_FILTER)
            if kind is None or not value:
                continue
            if kind == "choice" and value not in {v for v, _ in column.filter_choices}:
                continue
            filters[column.field] = value
        return cls(q=q, sort=sort, page=max(1, number), columns=filters)

    def filters(self, view: ListView, page: Page) -> dict[str, Any]:
        """QVD filters: the chosen tenant, the free text over ``view.search`` and the
        per-column filters (all of them must hold)."""
        out: dict[str, Any] = dict(page.tenant_filter())
        if self.q:
            pattern = like_pattern(self.q)
            out["-or"] = [{name: {"~": pattern}} for name in view.search]
        parts = [
            _column_filter(column, self.columns[column.field])
            for column in view.columns
            if column.field in self.columns
        ]
        if parts:
            out["-and"] = parts
        return out

    def order(self, view: ListView) -> list[tuple[str, bool]]:
        if self.sort:
            return [(self.sort.lstrip("-"), self.sort.startswith("-"))]
        return list(view.default_order)

    def params(self, **change: Any) -> dict[str, str]:
        """The query string's values (``change`` applied), defaults left out."""
        values: dict[str, Any] = {"q": self.q, "sort": self.sort, "p": self.page}
        values.update({FILTER_PREFIX + k: v for k, v in self.columns.items()})
        values.update(change)
        return {k: str(v) for k, v in values.items() if v not in ("", None) and (k, v) != ("p", 1)}

    def url(self, path: str, **change: Any) -> str:
        query = self.params(**change)
        return path + ("?" + urllib.parse.urlencode(query) if query else "")


def _column_filter(column: Column, value: str) -> dict[str, Any]:
    kind = column.filter_kind
    if kind == "text":
        return {column.field: {"~": like_pattern(value)}}
    if kind == "choice" and column.kind == "bool":
        return {column.field: value == "true"}
    if column.kind == "number" and value.lstrip("-").isdigit() and len(value) < 19:
        return {column.field: int(value)}
    return {column.field: value}  # the API checks it (and says why it refuses)
