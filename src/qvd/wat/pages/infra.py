"""What the detail and form pages of nodes, OS flavours and properties share beyond
:mod:`qvd.wat.pages.objectpages`: numbers typed in a form, the arguments of an update,
the "done" notices, and the custom-properties block of a detail page
(``templates/infra/properties.html``) with its two routes.

Every change still goes through :meth:`Page.call`; a refusal shows the API's message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import RedirectResponse, Response

from qvd.wat.pages.objectpages import ObjectKind, known_id, missing, refusal_page, refused_page
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page

__all__ = [
    "MAX_NAME",
    "MAX_TEXT",
    "Refused",
    "changed",
    "may_create",
    "number",
    "properties_router",
    "property_keys",
    "saved_flash",
]

MAX_TEXT = 32768  # the API's longest text argument (descriptions)
MAX_NAME = 1024


class Refused(Exception):
    """A form value the WAT cannot even send (not a number): re-render with ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def may_create(page: Page, kind: ObjectKind) -> Response | None:
    """None when the administrator may create objects of ``kind``; else the 403 page
    (the API would refuse the form anyway: this only saves typing it)."""
    if page.can(f"{kind.object}.create.") or (
        kind.object == "property" and page.can("property.manage.")
    ):
        return None
    message = page.t("Your roles do not allow you to create this kind of object.")
    return refusal_page(
        page, page.t("Not allowed"), message, 403, back=kind.path, back_label="Back"
    )


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
            return refused_page(page, kind, exc, back=f"{kind.path}/{object_id}")
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
