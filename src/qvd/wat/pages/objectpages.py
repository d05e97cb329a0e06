"""What every one-object page shares (VMs, users, nodes, OS flavours, properties, DIs,
tenants, configuration and the audit log): fetching one object by id (absent, out of
scope or not an id at all → the 404 page), the one mapping of an API refusal to an
HTTP status and its page (``templates/objects/refused.html``), the "button posts an
action then redirects" routes and their reloaded-URL counterparts, property changes from
a form, datetimes for ``<input type="datetime-local">`` and the "done" notices that
survive the redirect after a change (a fixed set: nothing the URL says is shown as text).

Every change still goes through :meth:`Page.call`; a refusal shows the API's message."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from qvd.wat.lists import MassInput
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = [
    "DONE",
    "MAX_ID",
    "PROPERTY_INPUTS",
    "ObjectKind",
    "fetch_one",
    "history",
    "http_status",
    "known_id",
    "local_input",
    "missing",
    "properties_context",
    "properties_router",
    "property_changes",
    "property_keys",
    "refusal_page",
    "refusal_status",
    "refusal_text",
    "refused_page",
    "reloaded_buttons_router",
    "run_button",
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
    "stopping": "Stopping its virtual machines.",
    "property": "Property saved.",
    "unproperty": "Property removed.",
}
"""Notices a page shows after a redirect (``?done=<key>``); any other key shows none."""

MAX_TEXT = 32768  # longest text a form field may carry
MAX_KEY = 1024  # longest property key a form may carry
MAX_ID = 2**31 - 1  # ids are PostgreSQL integers


@dataclass(frozen=True, slots=True)
class ObjectKind:
    """One kind of object with a detail page: its QVD name (``host``), where its pages
    live (``/hosts``), the English word for it, and (optionally) the English texts of
    its 404 page: ``gone`` (``{id}`` stands for the id asked for) and its heading."""

    object: str
    path: str
    noun: str
    gone: str = ""
    gone_heading: str = "Not found"
    back_label: str = "Back to the list"
    back_path: str = ""  # where the 404 page leads back to; default: ``path``

    @property
    def list_action(self) -> str:
        return f"{self.object}_get_list"


def known_id(value: int) -> bool:
    """Whether ``value`` can be an object's id (the API's ids are positive int32)."""
    return 0 < value <= MAX_ID


def http_status(code: int) -> int:
    """The HTTP status fitting QVD's status ``code``: the REST face's mapping."""
    if code == 5140:  # no node to start on
        return 503
    if code == 3500:  # tenant restricted
        return 403
    if 3000 <= code < 3500:
        return 401
    if 4200 <= code < 4300:
        return 403
    if code in (1300, 2230, 2240, 2290, 2291, 4100, 4110, 7100, 7110):
        return 404
    if 5000 <= code < 6000 or 7000 <= code < 8000 or code == 1200:
        return 409
    if code == 1100:
        return 500
    return 400


def refusal_status(exc: WatError) -> int:
    """The HTTP status of a page showing the refusal ``exc``: when every object failed
    for one reason (1200), that reason's."""
    codes = {status for status, _ in exc.failures.values()}
    return http_status(codes.pop() if len(codes) == 1 else exc.status)


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


def fetch_one(
    page: Page, action: str, object_id: int, fields: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The object ``object_id`` as ``action`` (a list or details action) shows it to
    this administrator; None when it cannot be an id, does not exist or is outside their
    scope (all read as the same absence). Other refusals raise :class:`WatError`."""
    if not known_id(object_id):
        return None
    answer = page.call(action, filters={"id": object_id}, fields=list(fields), limit=1,
                       count=False)  # fmt: skip
    return answer.rows[0] if answer.rows else None


def refusal_page(
    page: Page,
    heading: str,
    message: str,
    status: int,
    *,
    back: str = "/",
    back_label: str = "Back to the dashboard",
) -> Response:
    """The page saying why the administrator cannot see or do what they asked
    (``heading`` and ``message`` already translated; ``#missing`` on a 404)."""
    context = {"heading": heading, "message": message, "status": status, "back": back,
               "back_label": page.t(back_label)}  # fmt: skip
    return render(page, "objects/refused.html", context, status=status)


def missing(
    page: Page, kind: ObjectKind, object_id: int, refusal: WatError | None = None
) -> Response:
    """The 404 page of an object that is absent or not this administrator's (or, with
    the API's ``refusal``, the page saying why it may not be shown)."""
    if refusal is not None:
        return refused_page(page, kind, refusal)
    if kind.gone:
        message = page.t(kind.gone).replace("{id}", str(object_id))
    else:
        message = (f"{page.t('There is no such object, or it is not yours to see:')} "
                   f"{page.t(kind.noun)} {object_id}.")  # fmt: skip
    return refusal_page(page, page.t(kind.gone_heading), message, 404,
                        back=kind.back_path or kind.path, back_label=kind.back_label)  # fmt: skip


def refused_page(page: Page, kind: ObjectKind | None, exc: WatError, *, back: str = "") -> Response:
    """A page that could not be shown at all: the API's reason, with the HTTP status
    fitting its code."""
    status = refusal_status(exc)
    heading = "Not allowed" if status == 403 else "Refused"
    target = back or (kind.path if kind else "/")
    label = "Back" if back or kind else "Back to the dashboard"
    return refusal_page(page, page.t(heading), refusal_text(exc), status, back=target,
                        back_label=label)  # fmt: skip


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


HISTORY_ROWS = 10


def history(page: Page, kind: ObjectKind, object_id: int) -> list[dict[str, Any]] | None:
    """The latest audit-log entries about one object (None: this administrator may
    not read them)."""
    if not page.can(f"{kind.object}.see.log"):
        return None
    fields = ["id", "time", "action", "status"]
    if page.can("log.see.administrator"):
        fields.append("admin_name")
    try:
        answer = page.call(
            "log_get_list",
            filters={"qvd_object": kind.object, "object_id": object_id},
            fields=fields,
            order_by=[("time", True), ("id", True)],
            limit=HISTORY_ROWS,
            count=False,
        )
    except WatError:
        return None
    return answer.rows


def run_button(
    page: Page,
    kind: ObjectKind,
    object_id: int,
    action: str,
    arguments: Mapping[str, Any] | None,
    done: str | None,
    on_refusal: Callable[[Page, int, WatError], Response],
) -> Response:
    """A button of an object's page: run ``action`` on the object, then redirect 303 to
    its page with ``?done=<done>`` (``done`` None: to the list, the object is gone). A
    refusal is answered by ``on_refusal`` (the page again, with the API's reason); an
    object that is not there (or not an id) by the 404 page."""
    if not known_id(object_id):
        return missing(page, kind, object_id)
    try:
        page.call(action, filters={"id": object_id}, arguments=dict(arguments or {}) or None)
    except WatError as exc:
        if exc.status == 1300:  # nothing selected: absent or out of scope
            return missing(page, kind, object_id)
        return on_refusal(page, object_id, exc)
    target = kind.path if done is None else f"{kind.path}/{object_id}?done={done}"
    return RedirectResponse(target, status_code=303)


def reloaded_buttons_router(kind: ObjectKind) -> APIRouter:
    """``GET <path>/<id>/<anything>``: a button's (or form's) URL opened again, e.g.
    reloading the page a refusal answered: back to the object's page. Needs a session
    like every page (without one: to the login page). Mount it after the object's other
    GET routes."""
    router = APIRouter(include_in_schema=False)

    @router.get(kind.path + "/{object_id:int}/{verb}")
    def button_reloaded(object_id: int, verb: str, page: ReadPage) -> Response:
        return RedirectResponse(f"{kind.path}/{object_id}", status_code=303)

    return router


def property_keys(page: Page, kind: ObjectKind) -> list[str]:
    """The property keys that may be set on objects of ``kind`` (empty when this
    administrator may not list them: the form then asks for the key as text)."""
    try:
        answer = page.call(
            f"{kind.object}_get_property_list", fields=["key"], order_by=[("key", False)]
        )
    except WatError:
        return []
    return sorted({str(r["key"]) for r in answer.rows if r.get("key")})


def properties_context(
    page: Page, kind: ObjectKind, object_id: int, obj: Mapping[str, Any]
) -> dict[str, Any]:
    """What ``templates/objects/properties.html`` needs for the object ``obj``."""
    can = page.can(f"{kind.object}.update.properties")
    return {
        "props": obj.get("properties") or {},
        "prop_base": f"{kind.path}/{object_id}",
        "can_props": can,
        "keys": property_keys(page, kind) if can else [],
    }


def properties_router(
    kind: ObjectKind, on_refusal: Callable[[Page, int, WatError], Response]
) -> APIRouter:
    """``POST <path>/<id>/properties`` (set ``key`` to ``value``; or, from an older form,
    remove the key named by ``delete``) and ``…/properties/delete`` (remove ``key``),
    through ``<object>_update``'s ``__properties_changes__``. A refusal is answered by
    ``on_refusal(page, id, exc)``; an absent object by the 404 page."""
    router = APIRouter(include_in_schema=False)
    update = f"{kind.object}_update"

    def change(page: Page, object_id: int, changes: dict[str, Any], done: str) -> Response:
        arguments = {"__properties_changes__": changes}
        response = run_button(page, kind, object_id, update, arguments, done, on_refusal)
        if isinstance(response, RedirectResponse):
            response.headers["location"] += "#properties"
        return response

    @router.post(kind.path + "/{object_id:int}/properties")
    def set_property(
        page: MutatingPage,
        object_id: int,
        key: Annotated[str, Form(max_length=MAX_KEY)] = "",
        value: Annotated[str, Form(max_length=MAX_TEXT)] = "",
        delete: Annotated[str, Form(max_length=MAX_KEY)] = "",
    ) -> Response:
        changes = property_changes(key, value, delete)
        return change(page, object_id, changes, "unproperty" if "delete" in changes else "property")

    @router.post(kind.path + "/{object_id:int}/properties/delete")
    def delete_property(
        page: MutatingPage, object_id: int, key: Annotated[str, Form(max_length=MAX_KEY)] = ""
    ) -> Response:
        return change(page, object_id, {"delete": [key.strip()]}, "unproperty")

    return router
