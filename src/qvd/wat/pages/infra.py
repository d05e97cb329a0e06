"""What the detail and form pages of nodes, OS flavours and properties share: fetching
one object through its list action (absent or out of scope: 404), the HTTP status of
a refusal, the text fields of a form, and the custom-properties block of a detail page
(``templates/infra/properties.html``) with its two routes.

Every change still goes through :meth:`Page.call`; a refusal shows the API's message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import RedirectResponse, Response

from qvd.wat.pages.di_tags import known_id
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, render

__all__ = [
    "MAX_NAME",
    "MAX_TEXT",
    "ObjectKind",
    "Refused",
    "changed",
    "fetch_one",
    "history",
    "http_status",
    "known_id",
    "may_create",
    "missing",
    "number",
    "properties_router",
    "property_keys",
    "refusal_status",
    "refusal_text",
    "refused_page",
    "saved_flash",
]

MAX_TEXT = 32768  # the API's longest text argument (descriptions)
MAX_NAME = 1024


class Refused(Exception):
    """A form value the WAT cannot even send (not a number): re-render with ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ObjectKind:
    """One kind of object with a detail page: its QVD name (``host``), where its pages
    live (``/hosts``) and the English word for it in messages."""

    object: str
    path: str
    noun: str

    @property
    def list_action(self) -> str:
        return f"{self.object}_get_list"


def http_status(status: int) -> int:
    """The HTTP status fitting QVD's ``status`` code (as the REST face answers)."""
    if 3000 <= status < 3500:
        return 401
    if 4200 <= status < 4300 or status == 3500:
        return 403
    if status in (1300, 7100, 7110, 2290, 4100, 4110):
        return 404
    if status == 5140:
        return 503
    if 5000 <= status < 6000 or 7000 <= status < 8000 or status == 1200:
        return 409
    return 400


def refusal_text(exc: WatError) -> str:
    """The API's reason: the objects' own messages when a multi-object action failed."""
    if exc.failures:
        return "; ".join(message for _, message in exc.failures.values())
    return exc.message


def refusal_status(exc: WatError) -> int:
    codes = {status for status, _ in exc.failures.values()}
    return http_status(codes.pop() if len(codes) == 1 else exc.status)


def fetch_one(
    page: Page, kind: ObjectKind, object_id: int, fields: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The object ``object_id`` as this administrator may see it; None when it does
    not exist or lies outside their scope (another tenant's). Other refusals (no ACL
    to see this kind of object) raise :class:`WatError`."""
    if not known_id(object_id):
        return None
    answer = page.call(
        kind.list_action, filters={"id": object_id}, fields=list(fields), limit=1, count=False
    )
    return answer.rows[0] if answer.rows else None


def missing(page: Page, kind: ObjectKind, object_id: int) -> Response:
    """The 404 page of an object that is absent or not this administrator's."""
    return render(
        page,
        "infra/missing.html",
        {"kind": kind, "object_id": object_id},
        status=404,
    )


def refused_page(page: Page, kind: ObjectKind, exc: WatError) -> Response:
    """A page that could not be shown at all (no ACL): the API's reason."""
    return render(
        page,
        "infra/refused.html",
        {"kind": kind, "message": refusal_text(exc)},
        status=refusal_status(exc),
    )


def may_create(page: Page, kind: ObjectKind) -> Response | None:
    """None when the administrator may create objects of ``kind``; else the 403 page
    (the API would refuse the form anyway: this only saves typing it)."""
    if page.can(f"{kind.object}.create.") or (
        kind.object == "property" and page.can("property.manage.")
    ):
        return None
    message = page.t("Your roles do not allow you to create this kind of object.")
    return render(page, "infra/refused.html", {"kind": kind, "message": message}, status=403)


def number(page: Page, label: str, raw: str, *, minimum: int = 0) -> int | None:
    """A whole number typed in a form (None when left empty)."""
    text = raw.strip()
    if not text:
        return None
    if not text.lstrip("-").isdigit() or len(text) > 12:
        raise Refused(page.t("{label} must be a whole number").replace("{label}", page.t(label)))
    value = int(text)
    if value < minimum:
        raise Refused(
            page.t("{label} must be at least {minimum}")
            .replace("{label}", page.t(label))
            .replace("{minimum}", str(minimum))
        )
    return value


def changed(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of an update: what differs from the object as it is (so the API
    is asked only for what the administrator changed, and its per-field ACLs only for
    those)."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def saved_flash(page: Page, done: str) -> None:
    """The flash of a page reached by the redirect after a change (``?done=``)."""
    texts = {
        "created": "Created.",
        "saved": "Saved.",
        "blocked": "Blocked.",
        "unblocked": "Unblocked.",
        "stopping": "Stopping its virtual machines.",
        "property": "Property saved.",
        "unproperty": "Property removed.",
    }
    if done in texts:
        page.flash("ok", page.t(texts[done]))


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


def property_keys(page: Page, kind: ObjectKind) -> list[str]:
    """The property keys this administrator may set on objects of ``kind``."""
    try:
        answer = page.call(
            f"{kind.object}_get_property_list", fields=["key"], order_by=[("key", False)]
        )
    except WatError:
        return []
    return sorted({str(r["key"]) for r in answer.rows if r.get("key")})


def properties_router(kind: ObjectKind) -> APIRouter:
    """``POST <path>/<id>/properties`` (set one key) and ``…/properties/delete`` (remove
    one) through ``<object>_update``'s ``__properties_changes__``."""
    router = APIRouter(include_in_schema=False)
    update = f"{kind.object}_update"

    def change(page: Page, object_id: int, changes: dict[str, Any], done: str) -> Response:
        if not known_id(object_id):
            return missing(page, kind, object_id)
        try:
            page.call(
                update, filters={"id": object_id}, arguments={"__properties_changes__": changes}
            )
        except WatError as exc:
            return render(
                page,
                "infra/refused.html",
                {"kind": kind, "message": refusal_text(exc), "back": f"{kind.path}/{object_id}"},
                status=refusal_status(exc),
            )
        return RedirectResponse(f"{kind.path}/{object_id}?done={done}", status_code=303)

    @router.post(kind.path + "/{object_id:int}/properties")
    def set_property(
        page: MutatingPage,
        object_id: int,
        key: Annotated[str, Form(max_length=MAX_NAME)],
        value: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    ) -> Response:
        return change(page, object_id, {"set": {key: value}}, "property")

    @router.post(kind.path + "/{object_id:int}/properties/delete")
    def delete_property(
        page: MutatingPage,
        object_id: int,
        key: Annotated[str, Form(max_length=MAX_NAME)],
    ) -> Response:
        return change(page, object_id, {"delete": [key]}, "unproperty")

    return router
