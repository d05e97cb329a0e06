"""What the VM and user pages share: one object fetched by id (absent or out of scope →
a 404 page), the HTTP status that fits an API refusal, property changes from a form,
datetimes for ``<input type="datetime-local">`` and the "done" notices that survive
the redirect after a change (a fixed set: nothing the URL says is shown as text)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from qvd.wat.lists import MassInput
from qvd.wat.port import WatError
from qvd.wat.web import Page, render

__all__ = [
    "DONE",
    "PROPERTY_INPUTS",
    "fetch_one",
    "http_status",
    "local_input",
    "missing",
    "property_changes",
    "refusal_text",
    "set_property_arguments",
    "show_done",
    "shown_time",
    "typed_fields",
    "visible_fields",
]

DONE: Mapping[str, str] = {
    "created": "Created.",
    "saved": "Changes saved.",
    "start": "Start requested: the node starts it shortly.",
    "stop": "Stop requested.",
    "disconnect": "The user is being disconnected.",
    "block": "Blocked.",
    "unblock": "Unblocked.",
    "properties": "Properties saved.",
}
"""Notices a page shows after a redirect (``?done=<key>``); any other key shows none."""

MAX_TEXT = 32768  # longest text a form field may carry
MAX_ID = 2**31 - 1  # ids are PostgreSQL integers
_NOT_FOUND = frozenset({7100, 7110})
_CONFLICT = frozenset({1200, 7120, 7300, 7310, 7320, 7321, 7330, 7340})


def http_status(exc: WatError) -> int:
    """The HTTP status for a page re-rendered after the API refused: 403 for ACL
    refusals, 404 for a missing reference, 409 for conflicts of state, else 400."""
    code = exc.status
    if exc.failures:
        code = next(iter(exc.failures.values()))[0]
    if 4200 <= code < 4300:
        return 403
    if code in _NOT_FOUND:
        return 404
    if code in _CONFLICT or 5100 <= code < 5200 or 7200 <= code < 7300:
        return 409
    return 400


def visible_fields(page: Page, fields: Mapping[str, str | None]) -> list[str]:
    """The fields (name → the ACL needed to see it, ``"superadmin"``, or None) this
    administrator may ask for."""
    out = []
    for name, acl in fields.items():
        if acl == "superadmin":
            if page.superadmin:
                out.append(name)
        elif acl is None or page.can(acl):
            out.append(name)
    return out


def fetch_one(page: Page, action: str, object_id: int, fields: list[str]) -> dict[str, Any] | None:
    """The object ``object_id`` as the API shows it to this administrator; None when it
    does not exist or is outside their scope (both read as the same absence)."""
    if not 0 < object_id <= MAX_ID:
        return None
    answer = page.call(action, filters={"id": object_id}, fields=fields, limit=1)
    return answer.rows[0] if answer.rows else None


def missing(page: Page, what: str, back: str, refusal: WatError | None = None) -> Response:
    """The 404 page of an object that does not exist or is not this admin's to see
    (or, with the API's ``refusal``, the page saying why it may not be shown)."""
    status = http_status(refusal) if refusal else 404
    context = {"what": what, "back": back, "status": status,
               "refusal": refusal_text(refusal) if refusal else ""}  # fmt: skip
    return render(page, "vms/missing.html", context, status=status)


def refusal_text(exc: WatError) -> str:
    """The API's reason; for a refusal of some objects (1200), theirs."""
    if exc.failures:
        return "; ".join(message for _, message in exc.failures.values())
    return exc.message


def show_done(page: Page) -> None:
    """The notice of ``?done=<key>`` (one of :data:`DONE`) as a flash."""
    key = page.request.query_params.get("done", "")
    if key in DONE:
        page.flash("ok", page.t(DONE[key]))


def property_changes(key: str, value: str, delete: str) -> dict[str, Any]:
    """``__properties_changes__`` from the properties form: ``delete`` names a key to
    remove; otherwise ``key`` is set to ``value``."""
    if delete.strip():
        return {"delete": [delete.strip()]}
    return {"set": {key.strip(): value}}


PROPERTY_INPUTS = (MassInput("key", "Key", max_len=64), MassInput("value", "Value", max_len=1024))
"""What a "set a property" mass action asks for."""


def set_property_arguments(values: Mapping[str, str]) -> dict[str, Any]:
    """A "set a property" mass action's arguments from its typed ``key`` and ``value``."""
    return {"__properties_changes__": property_changes(values["key"], values["value"], "")}


def local_input(value: Any) -> str:
    """A datetime (or the API's ISO text) as ``YYYY-MM-DDTHH:MM`` in UTC for a
    ``datetime-local`` input; empty for none."""
    when = _utc(value)
    return "" if when is None else when.strftime("%Y-%m-%dT%H:%M")


def shown_time(value: Any) -> str:
    """A datetime as ``YYYY-MM-DD HH:MM:SS UTC`` for the page; empty for none."""
    when = _utc(value)
    return "" if when is None else when.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def _utc(value: Any) -> dt.datetime | None:
    """A datetime (or ISO text) in UTC (naive ones taken as UTC); None otherwise."""
    if isinstance(value, str) and value:
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    return value.astimezone(dt.UTC) if value.tzinfo is not None else value


async def typed_fields(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The fields ``names`` a form carried (absent ones left out: not sent to the API;
    empty ones kept: the admin cleared them)."""
    form = await request.form()
    out: dict[str, str] = {}
    for name in names:
        value = form.get(name)
        if isinstance(value, str):
            out[name] = value[:MAX_TEXT]
    return out
