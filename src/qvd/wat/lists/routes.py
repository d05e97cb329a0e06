"""The routes of a list (:func:`list_router`): ``GET <path>`` (the page; an htmx
request gets the list region alone), ``GET <path>.csv`` (the export), ``POST
<path>/mass`` (a mass action, with a confirmation step when the action asks for one)
and ``POST <path>/columns`` (the administrator's column choice).

DOM (tests and ``bench/wat.py`` rely on it): ``<table id="list" data-object="vm">``,
one ``<tr data-id="…">`` per row, each cell ``<td data-field="…">``; a list with live
fields carries ``data-live-action``/``data-live-fields`` and ``static/js/live.js`` keeps
those cells current from ``/api/ws``. Row checkboxes ``input[name=ids]`` and the
action buttons ``button[name=op]`` sit in ``form#mass``; the filters in
``form#filters``; the column choice in ``details#columns``; the export link is
``a#export-csv``.
"""

from __future__ import annotations

import math
import string
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from qvd.wat.lists.columns import reset_choice, save_choice, shown_columns
from qvd.wat.lists.export import csv_chunks, fetch
from qvd.wat.lists.mass import MassOutcome, MassRequest, input_name, names_of, run_mass
from qvd.wat.lists.model import Column, ListView
from qvd.wat.lists.query import ListQuery
from qvd.wat.port import Answer, WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render, setup_cache

__all__ = ["cell_link", "list_router", "run_list"]

MAX_QUERY = 2000


def _link_fields(columns: Sequence[Column]) -> set[str]:
    out: set[str] = set()
    for column in columns:
        if column.link:
            out.update(n for _, n, _, _ in string.Formatter().parse(column.link) if n)
    return out


def live_fields(view: ListView, columns: Sequence[Column]) -> list[str]:
    """The live fields of the columns shown (the others are not on screen)."""
    shown = {c.field for c in columns}
    return [f for f in view.live if f in shown]


def run_list(view: ListView, page: Page, query: ListQuery) -> tuple[Answer, list[Column]]:
    """The rows of one page of ``view`` and the columns shown."""
    columns = shown_columns(view, page)
    fields = sorted({"id", *(c.field for c in columns), *_link_fields(columns)})
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


def _query_of(view: ListView, page: Page, raw: str) -> ListQuery:
    """A list query from a query string a form carried back (checked again)."""
    pairs = urllib.parse.parse_qsl(raw[:MAX_QUERY], keep_blank_values=False)
    return ListQuery.parse(dict(pairs), view, view.visible_columns(page))


def _context(view: ListView, page: Page, query: ListQuery) -> tuple[dict[str, Any], int]:
    error: WatError | None = None
    try:
        answer, columns = run_list(view, page, query)
    except WatError as exc:
        answer, columns, error = Answer(), shown_columns(view, page), exc
    total = answer.total or 0
    pages = max(1, math.ceil(total / page.block))
    allowed = view.visible_columns(page)
    shown = {c.field for c in columns}
    context = {
        "view": view,
        "query": query,
        "answer": answer,
        "columns": columns,
        "all_columns": [(c, c.field in shown) for c in allowed if c.choosable],
        "filter_columns": [c for c in allowed if c.filter_kind is not None],
        "live": live_fields(view, columns),
        "total": total,
        "pages": pages,
        "error": error,
        "cell_link": cell_link,
        "input_name": input_name,
        "mass": view.mass_actions(page),
        "tenant_columns": view.saves_columns and page.can("views.update.columns"),
        "outcome": None,
    }
    return context, (_status(error) if error is not None else 200)


def _status(error: WatError) -> int:
    if error.status in (1300,):
        return 404
    if 4000 <= error.status < 5000:
        return 403
    return 400


def list_router(view: ListView) -> APIRouter:
    """The routes of ``view``. Include it in the area's router before any
    ``<path>/{id}`` route (``<path>/mass`` and ``<path>/columns`` are not ids)."""
    router = APIRouter(include_in_schema=False)

    @router.get(view.path)
    def show(request: Request, page: ReadPage) -> Response:
        query = ListQuery.parse(request.query_params, view, view.visible_columns(page))
        context, status = _context(view, page, query)
        if _region_only(request):  # the address bar shows the tidy query, not the form's
            headers = {"HX-Push-Url": query.url(view.path)}
            return render(page, "lists/region.html", context, status=status, headers=headers)
        return render(page, "lists/page.html", context, status=status)

    @router.get(view.path + ".csv")
    def export(request: Request, page: ReadPage) -> Response:
        query = ListQuery.parse(request.query_params, view, view.visible_columns(page))
        columns = shown_columns(view, page)
        fields = sorted({"id", *(c.field for c in columns)})
        try:
            first = fetch(view, page, query, fields, 0)
        except WatError as exc:
            context, _ = _context(view, page, query)
            context["error"] = exc
            return render(page, "lists/page.html", context, status=_status(exc))
        name = view.path.strip("/").replace("/", "-") or view.object
        return StreamingResponse(
            csv_chunks(view, page, query, columns, first),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}.csv"',
                "Cache-Control": "no-store",
            },
        )

    @router.post(view.path + "/mass")
    async def mass(request: Request, page: MutatingPage) -> Response:
        form = await request.form()
        fields: dict[str, Any] = {k: form.get(k) for k in form if k != "ids"}
        fields["ids"] = [v for v in form.getlist("ids") if isinstance(v, str)]
        query = _query_of(view, page, str(form.get("qs", "")))
        mass_request = MassRequest.from_form(view, page, fields)
        if mass_request.problem:
            page.flash("error", mass_request.explain(page))
            context, _ = _context(view, page, query)
            return render(page, "lists/page.html", context, status=400)
        action = mass_request.action
        assert action is not None
        if action.confirm and not mass_request.confirmed:
            names = names_of(view, page, mass_request.ids, keep_missing=False)
            if not names:
                page.flash("error", page.t("None of the selected objects is there any more."))
                context, _ = _context(view, page, query)
                return render(page, "lists/page.html", context, status=404)
            context = {
                "view": view,
                "action": action,
                "selected": list(names.items()),
                "values": mass_request.values,
                "input_name": input_name,
                "back": query.url(view.path),
                "qs": urllib.parse.urlencode(query.params()),
            }
            return render(page, "lists/confirm.html", context)
        outcome = run_mass(view, page, mass_request)
        _flash_outcome(page, action.label, outcome)
        context, _ = _context(view, page, query)
        context["outcome"] = outcome
        status = 200 if outcome.error is None else _status(outcome.error)
        return render(page, "lists/page.html", context, status=status)

    @router.get(view.path + "/mass")
    @router.get(view.path + "/columns")
    def back_to_list(page: ReadPage) -> Response:
        """A reload of a mass action's or a column choice's answer: the list again."""
        return RedirectResponse(view.path, status_code=303)

    @router.post(view.path + "/columns")
    async def columns(request: Request, page: MutatingPage) -> Response:
        form = await request.form()
        query = _query_of(view, page, str(form.get("qs", "")))
        if not view.saves_columns:
            page.flash("error", page.t("This list's columns cannot be chosen."))
            context, _ = _context(view, page, query)
            return render(page, "lists/page.html", context, status=400)
        if form.get("reset") is not None:
            problem = reset_choice(view, page)
            errors = [problem] if problem else []
        else:
            wanted = {v for v in form.getlist("col") if isinstance(v, str)}
            tenant = form.get("scope") == "tenant"
            errors = save_choice(view, page, wanted, for_tenant=tenant).errors
        setup_cache.drop(page.sid)
        if errors:
            page.setup = {**page.setup, "views": _fresh_views(page)}
            for text in errors:
                page.flash("error", text)
            context, _ = _context(view, page, query)
            return render(page, "lists/page.html", context, status=400)
        return RedirectResponse(query.url(view.path), status_code=303)

    return router


def _fresh_views(page: Page) -> list[dict[str, Any]]:
    try:
        return page.call("admin_view_get_list").rows
    except WatError:
        return list(page.setup.get("views") or [])


def _flash_outcome(page: Page, label: str, outcome: MassOutcome) -> None:
    what = page.t(label)
    if outcome.error is not None:
        page.flash("error", f"{what}: {outcome.error.message}")
    elif outcome.failures:
        page.flash("error", f"{what}: {outcome.summary}")
    else:
        page.flash("ok", f"{what}: " + page.t("{count} done").format(count=outcome.done))


def _region_only(request: Request) -> bool:
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-target") == "list-region"
    )
