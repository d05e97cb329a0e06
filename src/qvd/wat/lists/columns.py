"""Which columns a list shows: the administrator's choice over the tenant's defaults
(the API's views: ``admin_view_get_list`` / ``current_admin_setup``'s ``views``),
else each column's ``default``; saving and resetting that choice through the
``admin_attribute_view_set`` / ``tenant_attribute_view_set`` / ``admin_view_reset``
actions."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qvd.wat.lists.model import Column, ListView
from qvd.wat.port import WatError

if TYPE_CHECKING:
    from qvd.wat.web import Page

__all__ = ["ColumnSave", "chosen", "reset_choice", "save_choice", "shown_columns"]

VIEW_TYPE = "list_column"
DEVICE = "desktop"
UPDATE_ACL = "views.update.columns"
UNKNOWN_FIELD = 6320  # the API knows no such list field of the object


def chosen(view: ListView, page: Page) -> dict[str, bool]:
    """field → visible, from the administrator's effective views of this list."""
    out: dict[str, bool] = {}
    if not view.saves_columns:
        return out
    for row in page.setup.get("views") or ():
        if not isinstance(row, Mapping):
            continue
        if (
            row.get("qvd_object") == view.object
            and row.get("view_type") == VIEW_TYPE
            and row.get("device_type") == DEVICE
            and not row.get("property")
            and isinstance(row.get("field"), str)
        ):
            out[row["field"]] = bool(row.get("visible"))
    return out


def shown_columns(view: ListView, page: Page) -> list[Column]:
    """The columns shown: those the administrator may see, as they chose (else the
    column's default); never none (the first one stays)."""
    allowed = view.visible_columns(page)
    choice = chosen(view, page)
    shown = [c for c in allowed if (choice.get(c.field, c.default) if c.choosable else c.default)]
    return shown or allowed[:1]


@dataclass(slots=True)
class ColumnSave:
    """What saving a choice did: how many columns changed and the API's refusals."""

    changed: int = 0
    errors: list[str] = field(default_factory=list)


def save_choice(
    view: ListView, page: Page, wanted: Collection[str], *, for_tenant: bool = False
) -> ColumnSave:
    """Store ``wanted`` (the fields to show) for the administrator, or as the tenant's
    default (``for_tenant``: needs ``views.update.columns``; a superadmin who chose a
    tenant writes that tenant's). Only columns whose visibility differs from what shows
    now are written; a column the API refuses keeps its default and its message is
    reported."""
    result = ColumnSave()
    allowed = [c for c in view.visible_columns(page) if c.choosable]
    if not any(c.field in wanted for c in view.visible_columns(page)):
        result.errors.append(page.t("Keep at least one column."))
        return result
    current = {c.field for c in shown_columns(view, page)}
    action = "tenant_attribute_view_set" if for_tenant else "admin_attribute_view_set"
    for column in allowed:
        visible = column.field in wanted
        if not for_tenant and visible == (column.field in current):
            continue
        arguments: dict[str, Any] = {
            "qvd_object": view.object,
            "view_type": VIEW_TYPE,
            "device_type": DEVICE,
            "field": column.field,
            "visible": visible,
        }
        if for_tenant and page.superadmin and page.tenant_choice is not None:
            arguments["tenant_id"] = page.tenant_choice
        try:
            page.call(action, arguments=arguments)
            result.changed += 1
        except WatError as exc:
            if exc.status != UNKNOWN_FIELD:  # not a view attribute: keeps its default
                result.errors.append(f"{page.t(column.label)}: {exc.message}")
    return result


def reset_choice(view: ListView, page: Page) -> str | None:
    """Forget the administrator's own choice for this list (the tenant's defaults, else
    the columns' own, show again); the API's message when it refuses."""
    filters = {"qvd_object": view.object, "view_type": VIEW_TYPE, "device_type": DEVICE}
    try:
        page.call("admin_view_reset", filters=filters)
    except WatError as exc:
        if exc.status != 1300:  # nothing of yours to reset: already the defaults
            return exc.message
    return None
