"""The audit log: newest first, filtered by kind of action, object, administrator,
status and source, searched by free text; an entry's page shows its arguments (the API
has already redacted secrets from them).

Every filter becomes a ``log_get_list`` filter: the API keeps tenant administrators to
their tenant's entries (and never a superadmin's)."""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from qvd.wat.lists import Column, ListView, list_router
from qvd.wat.pages.objectpages import refusal_page, refusal_status
from qvd.wat.port import Answer, WatError
from qvd.wat.web import Page, ReadPage, render

__all__ = ["OBJECT_PAGES", "VIEW", "LogQuery", "router"]

VIEW = ListView(
    object="log",
    path="/logs",
    title="Audit log",
    list_action="log_get_list",
    columns=(
        Column("time", "Time", "datetime", link="/logs/{id}"),
        Column("admin_name", "Administrator", acl="log.see.administrator"),
        Column("action", "Action"),
        Column("qvd_object", "Object type"),
        Column("object_name", "Object"),
        Column("status", "Status", "number"),
        Column("source", "Source", acl="log.see.source"),
        Column("ip", "Address", acl="log.see.address"),
    ),
    search=("action", "object_name", "admin_name"),
    detail="/logs/{id}",
    default_order=(("time", True), ("id", True)),
)

OBJECT_PAGES = {
    "user": "/users", "vm": "/vms", "host": "/hosts", "osf": "/osfs", "di": "/dis",
    "role": "/roles", "administrator": "/administrators", "tenant": "/tenants",
}  # fmt: skip
"""Where an entry's object has its page."""

MAX_TEXT = 120
STATUS_CHOICES = ("", "ok", "failed")
_FIELDS = (
    "id", "time", "admin_id", "admin_name", "action", "type_of_action", "qvd_object",
    "object_id", "object_name", "status", "source", "ip", "object_deleted",
)  # fmt: skip

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class LogQuery:
    """The log page's query string, bounded: free text, the filters, sort and page."""

    q: str = ""
    action: str = ""  # type_of_action
    object: str = ""  # qvd_object
    admin: str = ""
    status: str = ""  # "", "ok", "failed" or a code
    source: str = ""
    sort: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> LogQuery:
        def text(name: str) -> str:
            return params.get(name, "")[:MAX_TEXT].strip()

        status = text("status")
        if status not in STATUS_CHOICES and not (status.isdigit() and len(status) <= 5):
            status = ""
        sort = text("sort")
        if sort.lstrip("-") not in {c.field for c in VIEW.columns}:
            sort = ""
        raw = params.get("p", "1")
        number = int(raw) if raw.isdigit() and len(raw) < 7 else 1
        return cls(
            q=text("q"), action=text("action"), object=text("object"), admin=text("admin"),
            status=status, source=text("source"), sort=sort, page=max(1, number),
        )  # fmt: skip

    def filters(self, page: Page) -> dict[str, Any]:
        out: dict[str, Any] = dict(page.tenant_filter())
        if self.q:
            pattern = _like(self.q)
            fields = [f for f in VIEW.search if f != "admin_name" or page.can(_ADMIN_ACL)]
            out["-or"] = [{name: {"~": pattern}} for name in fields]
        if self.action:
            out["type_of_action"] = self.action
        if self.object:
            out["qvd_object"] = self.object
        if self.admin:
            out["admin_name"] = {"~": _like(self.admin)}
        if self.status == "ok":
            out["status"] = 0
        elif self.status == "failed":
            out["status"] = {"!=": 0}
        elif self.status:
            out["status"] = int(self.status)
        if self.source:
            out["source"] = self.source
        return out

    def order(self) -> list[tuple[str, bool]]:
        if self.sort:
            return [(self.sort.lstrip("-"), self.sort.startswith("-")), ("id", True)]
        return list(VIEW.default_order)

    def url(self, **change: Any) -> str:
        values = {
            "q": self.q, "action": self.action, "object": self.object, "admin": self.admin,
            "status": self.status, "source": self.source, "sort": self.sort, "p": self.page,
            **change,
        }  # fmt: skip
        query = {k: str(v) for k, v in values.items() if v not in ("", None, 1)}
        return "/logs" + ("?" + urllib.parse.urlencode(query) if query else "")

    def sort_url(self, field: str) -> str:
        if self.sort == field:
            return self.url(sort="-" + field, p=1)
        if self.sort == "-" + field:
            return self.url(sort="", p=1)
        return self.url(sort=field, p=1)


_ADMIN_ACL = "log.see.administrator"


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _choices(page: Page, action: str) -> list[str]:
    try:
        return [str(r["name"]) for r in page.call(action).rows]
    except WatError:
        return []


def object_link(row: Mapping[str, Any]) -> str | None:
    """The page of an entry's object, when it still exists."""
    base = OBJECT_PAGES.get(str(row.get("qvd_object")))
    object_id = row.get("object_id")
    if base is None or not isinstance(object_id, int) or row.get("object_deleted"):
        return None
    return f"{base}/{object_id}"


@router.get("/logs")
def logs(request: Request, page: ReadPage) -> Response:
    query = LogQuery.parse(request.query_params)
    columns = VIEW.visible_columns(page)
    fields = [f for f in _FIELDS if f not in ("admin_id", "admin_name") or page.can(_ADMIN_ACL)]
    fields = [f for f in fields if f not in ("source", "ip")
              or page.can({"source": "log.see.source", "ip": "log.see.address"}[f])]  # fmt: skip
    error = None
    try:
        answer = page.call(
            "log_get_list", filters=query.filters(page) or None, fields=fields,
            order_by=query.order(), limit=page.block, offset=(query.page - 1) * page.block,
        )  # fmt: skip
    except WatError as exc:
        answer, error = Answer(), exc
    total = answer.total or 0
    context = {
        "query": query, "answer": answer, "columns": columns, "total": total,
        "pages": max(1, math.ceil(total / page.block)), "error": error,
        "actions": _choices(page, "action_get_list"),
        "objects": _choices(page, "object_get_list"),
        "sources": _choices(page, "sources_in_log"),
        "object_link": object_link, "see_admin": page.can(_ADMIN_ACL),
        "see_details": page.can("log.see-details."),
    }  # fmt: skip
    partial = request.headers.get("hx-request") == "true" and (
        request.headers.get("hx-target") == "list-region"
    )
    template = "logs/table.html" if partial else "logs/list.html"
    return render(page, template, context, status=refusal_status(error) if error else 200)


@router.get("/logs/{log_id:int}")
def log_entry(page: ReadPage, log_id: int) -> Response:
    try:
        answer = page.call("log_get_details", filters={"id": log_id}, limit=1)
    except WatError as exc:
        return refusal_page(page, page.t("Audit log"), exc.message, refusal_status(exc))
    if not answer.rows:
        return refusal_page(
            page, page.t("No such log entry"),
            page.t("There is no log entry with id") + f" {log_id}.", 404,
        )  # fmt: skip
    row = answer.rows[0]
    arguments = row.get("arguments")
    shown = json.dumps(arguments, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return render(page, "logs/entry.html", {
        "row": row, "arguments": shown if arguments is not None else None,
        "object_href": object_link(row),
    })  # fmt: skip


# the list engine's other routes (export, column choice); GET /logs above wins
router.include_router(list_router(VIEW))
