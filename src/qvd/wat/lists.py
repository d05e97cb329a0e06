"""List views: one :class:`ListView` per kind of object (VMs, users, nodes, …) and the
routes that show it: ``GET <path>`` (the page; an htmx request gets the table alone),
free-text search, sort, pagination with the administrator's page size.

A list is one action (``<object>_get_list``) with QVD's filters, through the port.

DOM (tests and ``bench/wat.py`` rely on it): ``<table id="list" data-object="vm">``,
one ``<tr data-id="…">`` per row, each cell ``<td data-field="…">``; a list with live
fields carries ``data-live-action``/``data-live-fields`` and ``static/js/live.js`` keeps
those cells current from ``/api/ws``.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from qvd.wat.port import Answer, WatError
from qvd.wat.web import Page, ReadPage, render

__all__ = ["Column", "ListQuery", "ListView", "MassAction", "list_router", "run_list"]

MAX_SEARCH = 200


@dataclass(frozen=True, slots=True)
class Column:
    """A column: the action's ``field``, its English ``label``; ``kind`` says how a value
    shows (text, number, bool, datetime, state); ``link`` is a URL pattern filled from
    the row (``/users/{user_id}``); ``acl`` the ACL needed to see it."""

    field: str
    label: str
    kind: str = "text"
    sortable: bool = True
    link: str | None = None
    acl: str | None = None
    default: bool = True


@dataclass(frozen=True, slots=True)
class MassAction:
    """An action on the selected rows: ``action`` run with ``{"id": [ids]}`` as filters
    and ``arguments``; ``confirm`` asks first (deletes)."""

    name: str
    label: str
    action: str
    acl: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class ListView:
    """What one list shows and how."""

    object: str
    path: str
    title: str
    list_action: str
    columns: tuple[Column, ...]
    search: tuple[str, ...] = ("name",)
    detail: str | None = None
    create: str | None = None
    live: tuple[str, ...] = ()
    mass: tuple[MassAction, ...] = ()
    default_order: tuple[tuple[str, bool], ...] = (("id", False),)
    acl: str | None = None

    def visible_columns(self, page: Page) -> list[Column]:
        return [c for c in self.columns if c.acl is None or page.can(c.acl)]

    def mass_actions(self, page: Page) -> list[MassAction]:
        return [m for m in self.mass if m.acl is None or page.can(m.acl)]


@dataclass(slots=True)
class ListQuery:
    """A list's query string, parsed and bounded: ``q`` (free text), ``sort`` (a field,
    ``-`` in front for descending), ``p`` (page, from 1)."""

    q: str = ""
    sort: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str], view: ListView) -> ListQuery:
        q = params.get("q", "")[:MAX_SEARCH].strip()
        sort = params.get("sort", "")
        names = {c.field for c in view.columns if c.sortable}
        if sort.lstrip("-") not in names:
            sort = ""
        raw = params.get("p", "1")
        number = int(raw) if raw.isdigit() and len(raw) < 7 else 1
        return cls(q=q, sort=sort, page=max(1, number))

    def filters(self, view: ListView, page: Page) -> dict[str, Any]:
        out: dict[str, Any] = dict(page.tenant_filter())
        if self.q:
            pattern = (
                "%" + self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            out["-or"] = [{name: {"~": pattern}} for name in view.search]
        return out

    def order(self, view: ListView) -> list[tuple[str, bool]]:
        if self.sort:
            return [(self.sort.lstrip("-"), self.sort.startswith("-"))]
        return list(view.default_order)

    def url(self, path: str, **change: Any) -> str:
        values = {"q": self.q, "sort": self.sort, "p": self.page, **change}
        query = {
            k: str(v) for k, v in values.items() if v not in ("", None, 1) or (k == "sort" and v)
        }
        return path + ("?" + urllib.parse.urlencode(query) if query else "")


def run_list(view: ListView, page: Page, query: ListQuery) -> tuple[Answer, list[Column]]:
    """The rows of one page of ``view`` and the columns shown."""
    columns = view.visible_columns(page)
    fields = sorted({"id", *(c.field for c in columns), *view.live})
    answer = page.call(
        view.list_action,
        filters=query.filters(view, page) or None,
        fields=fields,
        order_by=query.order(view),
        limit=page.block,
        offset=(query.page - 1) * page.block,
    )
    return answer, columns


def cell_link(column: Column, row: Mapping[str, Any]) -> str | None:
    if column.link is None:
        return None
    try:
        return column.link.format(**row)
    except (KeyError, IndexError, ValueError):
        return None


def list_router(view: ListView) -> APIRouter:
    """The routes of ``view``."""
    router = APIRouter(include_in_schema=False)

    @router.get(view.path)
    def show(request: Request, page: ReadPage) -> Response:
        query = ListQuery.parse(request.query_params, view)
        error = None
        try:
            answer, columns = run_list(view, page, query)
        except WatError as exc:
            answer, columns, error = Answer(), view.visible_columns(page), exc
        total = answer.total or 0
        pages = max(1, math.ceil(total / page.block))
        context = {
            "view": view,
            "query": query,
            "answer": answer,
            "columns": columns,
            "total": total,
            "pages": pages,
            "error": error,
            "cell_link": cell_link,
            "mass": view.mass_actions(page),
        }
        template = "lists/table.html" if _table_only(request) else "lists/page.html"
        return render(page, template, context)

    return router


def _table_only(request: Request) -> bool:
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-target") == "list-region"
    )


def ids_of(values: Sequence[str]) -> list[int]:
    """Selected row ids from a form (anything else dropped)."""
    return [int(v) for v in values if v.isdigit() and len(v) < 12]
