"""``/api/v1/session_history``: the session history (``session_get_list``), one page as
JSON, or every selected row as CSV (``/api/v1/session_history.csv``, streamed).

Both take the usual list parameters (``filters``, ``fields``, ``order_by``; the CSV
pages through the rows itself, so ``limit``/``offset`` apply to the JSON only) and the
same authentication as every REST route. The CSV's first chunk is read before the
response starts: a refusal (no ``session.see``, a bad filter) is an error status with
its reason, not a broken download. A cell a spreadsheet would read as a formula
(``= + - @``, tab, carriage return first) gets a ``'`` in front.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from qvd.api.actions.core import ActionRequest, ActionResult
from qvd.api.actions.listing import visible_fields
from qvd.api.actions.principal import Principal
from qvd.api.faces.rest import ERRORS, SECURITY, Auth, Params, execute, page
from qvd.api.faces.schemas import Page
from qvd.api.services.sessions import SPEC
from qvd.wat.lists.export import cell_text, csv_lines

__all__ = ["CSV_CHUNK", "router"]

CSV_CHUNK = 2000  # rows one action call reads for the CSV
CSV_MAX_ROWS = 1_000_000

router = APIRouter(tags=["session history"], dependencies=SECURITY, responses=ERRORS)


@router.get("/api/v1/session_history", response_model=Page, summary="Read the session history")
def list_sessions(request: Request, principal: Auth, params: Params) -> Page:
    if not params.order_by:
        params.order_by = [("started_at", True)]
    return page(request, principal, params.request("session_get_list"))


@router.get(
    "/api/v1/session_history.csv",
    summary="The session history as CSV (streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_sessions(request: Request, caller: Auth, params: Params) -> StreamingResponse:
    order = list(params.order_by) or [("started_at", True)]
    if all(name != "id" for name, _ in order):
        order.append(("id", True))  # ties broken by id: stable paging
    principal: Principal = await run_in_threadpool(caller.principal)
    fields = list(params.fields) or visible_fields(SPEC, principal)

    def chunk(offset: int) -> ActionResult:
        req = ActionRequest(
            action="session_get_list", filters=params.filters, fields=fields,
            order_by=order, limit=CSV_CHUNK, offset=offset, count=False,
        )  # fmt: skip
        return execute(request, principal, req)

    first = await run_in_threadpool(chunk, 0)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        _csv(fields, first, chunk),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="sessions-{stamp}.csv"'},
    )


def _csv(
    fields: Sequence[str], first: ActionResult, chunk: Any
) -> Iterator[str]:  # a sync iterator: Starlette runs it in its thread pool
    yield csv_lines([list(fields)])
    answer, offset = first, 0
    while True:
        yield csv_lines([[cell_text(row.get(f)) for f in fields] for row in answer.rows])
        offset += len(answer.rows)
        if len(answer.rows) < CSV_CHUNK or offset >= CSV_MAX_ROWS:
            return
        answer = chunk(offset)
