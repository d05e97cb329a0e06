"""What the detail and form pages of nodes, OS flavours and properties share beyond
:mod:`qvd.wat.pages.objectpages`: numbers typed in a form, the arguments of an update,
and whether a kind of object may be created.

Every change still goes through :meth:`Page.call`; a refusal shows the API's message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from qvd.wat.pages.objectpages import ObjectKind, refusal_page
from qvd.wat.web import Page

__all__ = [
    "MAX_NAME",
    "MAX_TEXT",
    "Refused",
    "changed",
    "may_create",
    "number",
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
