"""An OSF's tag board (``/osfs/<id>/tags``): every DI of the OSF with its tags; a tag
(``default``, ``head`` or a custom one) moves to another DI by drag and drop
(``static/js/dis.js`` fills the form) or by the form ``#tag-move``, which also adds a
new custom tag. Before the move ``#tag-preview`` lists the VMs it affects: the OSF's
VMs whose ``di_tag`` is that tag and that run another DI now.

Expiry: the API's ``di_update`` moves the tag but sets no VM expiration (only
publishing a DI does, from the DI's own delays), so when the form gives a soft or hard
expiry the page sets ``expiration_soft``/``expiration_hard`` on the affected VMs with
``vm_update`` right after the move."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ParamSpec

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from qvd.wat.pages.objectpages import (
    ObjectKind,
    fetch_one,
    known_id,
    missing,
    refusal_page,
    refusal_status,
    refusal_text,
)
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = [
    "Preview",
    "parse_expiry",
    "preview",
    "router",
]

router = APIRouter(include_in_schema=False)
P = ParamSpec("P")
MAX_TAG = 64
MAX_VMS = 500
VM_FIELDS = ["id", "name", "user_name", "state", "di_id_in_use", "di_version_in_use"]


@dataclass(slots=True)
class Preview:
    """What moving ``tag`` onto DI ``di_id`` does: ``affected`` (VMs running another
    DI through the tag: they get the expiry), ``later`` (stopped VMs of the tag: they
    boot the new DI at their next start)."""

    tag: str
    di_id: int
    affected: list[dict[str, Any]] = field(default_factory=list)
    later: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


OSF = ObjectKind("osf", "/osfs", "OS flavour", gone="There is no OS flavour {id} that you may see.",
                 gone_heading="OS flavour not found", back_label="Back to the disk images",
                 back_path="/dis")  # fmt: skip


def preview(page: Page, osf_id: int, tag: str, di_id: int) -> Preview:
    """The VMs of OSF ``osf_id`` that a move of ``tag`` onto ``di_id`` reaches."""
    out = Preview(tag, di_id)
    try:
        rows = page.call(
            "vm_get_list", filters={"osf_id": osf_id, "di_tag": tag}, fields=VM_FIELDS,
            order_by=[("name", False)], limit=MAX_VMS,
        ).rows  # fmt: skip
    except WatError as exc:
        out.error = exc.message
        return out
    for row in rows:
        if row.get("state") not in (None, "stopped") and row.get("di_id_in_use") != di_id:
            out.affected.append(row)
        elif row.get("state") in (None, "stopped"):
            out.later.append(row)
    return out


def parse_expiry(text: str) -> str | None:
    """A ``datetime-local`` value (taken as UTC) as the ISO text ``vm_update`` takes;
    None when empty; ValueError when it is not a date and time."""
    text = text.strip()
    if not text:
        return None
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.isoformat()


def shows_refusals(route: Callable[P, Response]) -> Callable[P, Response]:
    """``route`` with an API refusal it did not handle shown as a page (the API's
    message, the HTTP status fitting QVD's code) instead of a server error."""

    @functools.wraps(route)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return route(*args, **kwargs)
        except WatError as exc:
            page = next(v for v in kwargs.values() if isinstance(v, Page))
            return refusal_page(page, page.t("Refused"), refusal_text(exc), refusal_status(exc),
                                back="/dis", back_label="Back to the disk images")  # fmt: skip

    return wrapper


def _osf(page: Page, osf_id: int) -> dict[str, Any] | None:
    return fetch_one(page, OSF.list_action, osf_id, ["id", "name"])


def _dis(page: Page, osf_id: int) -> list[dict[str, Any]]:
    fields = ["id", "disk_image", "version", "state", "blocked"]
    if page.can("di.see.tags"):
        fields.append("tag_objects")
    rows = page.call(
        "di_get_list", filters={"osf_id": osf_id}, fields=fields, order_by=[("id", False)],
        limit=1000,
    ).rows  # fmt: skip
    for row in rows:
        row.setdefault("tag_objects", [])
    return rows


def _movable(dis: list[dict[str, Any]]) -> list[str]:
    """The tags of the OSF that may move (every tag but the fixed version tags)."""
    tags = {t["tag"] for d in dis for t in d["tag_objects"] if not t.get("fixed")}
    return sorted(tags | {"default", "head"}, key=lambda t: (t not in ("default", "head"), t))


def _label(di: dict[str, Any]) -> str:
    version = di.get("version")
    return f"{version} ({di['disk_image']})" if version else str(di["disk_image"])


def _missing(page: Page, osf_id: int) -> Response:
    return missing(page, OSF, osf_id)


def _board(
    page: Page,
    osf: dict[str, Any],
    form: dict[str, str],
    shown: Preview | None,
    *,
    status: int = 200,
) -> Response:
    dis = _dis(page, int(osf["id"]))
    return render(
        page, "dis/tags.html",
        {"osf": osf, "dis": dis, "movable": _movable(dis), "form": form, "preview": shown,
         "di_choices": [(d["id"], _label(d)) for d in dis]},
        status=status,
    )  # fmt: skip


def _chosen(request: Request) -> tuple[str, int | None]:
    tag = request.query_params.get("tag", "")[:MAX_TAG].strip()
    raw = request.query_params.get("di_id", "")
    return tag, (int(raw) if raw.isdigit() and len(raw) < 12 else None)


@router.get("/osfs/{osf_id:int}/tags")
@shows_refusals
def board(osf_id: int, request: Request, page: ReadPage) -> Response:
    """The board; ``?tag=&di_id=`` preselects a move and shows its preview."""
    osf = _osf(page, osf_id)
    if osf is None:
        return _missing(page, osf_id)
    tag, di_id = _chosen(request)
    shown = preview(page, osf_id, tag, di_id) if tag and di_id is not None else None
    form = {"tag": tag, "di_id": str(di_id or ""), "expire_soft": "", "expire_hard": ""}
    return _board(page, osf, form, shown)


@router.get("/osfs/{osf_id:int}/tags/preview")
@shows_refusals
def preview_fragment(osf_id: int, request: Request, page: ReadPage) -> Response:
    """``#tag-preview`` alone (htmx asks for it whenever the move form changes)."""
    osf = _osf(page, osf_id)
    if osf is None:
        return _missing(page, osf_id)
    tag, di_id = _chosen(request)
    shown = preview(page, osf_id, tag, di_id) if tag and di_id is not None else None
    return render(page, "dis/tag_preview.html", {"preview": shown})


@router.post("/osfs/{osf_id:int}/tags")
@shows_refusals
def move(
    osf_id: int,
    page: MutatingPage,
    tag: Annotated[str, Form(max_length=MAX_TAG)],
    di_id: Annotated[int, Form()],
    expire_soft: Annotated[str, Form(max_length=32)] = "",
    expire_hard: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Move (or add) ``tag`` onto DI ``di_id`` of this OSF; with an expiry, set it on
    the VMs the move affects."""
    osf = _osf(page, osf_id)
    if osf is None:
        return _missing(page, osf_id)
    tag = tag.strip()
    form = {"tag": tag, "di_id": str(di_id), "expire_soft": expire_soft,
            "expire_hard": expire_hard}  # fmt: skip
    target = (
        page.call("di_get_list", filters={"id": di_id, "osf_id": osf_id},
                  fields=["id", "version"], limit=1).rows
        if known_id(di_id) else []
    )  # fmt: skip
    if not target:
        page.flash("error", page.t("That disk image is not one of this OS flavour."))
        return _board(page, osf, form, None, status=404)
    try:
        soft, hard = parse_expiry(expire_soft), parse_expiry(expire_hard)
    except ValueError:
        page.flash("error", page.t("An expiry is a date and time."))
        return _board(page, osf, form, None, status=400)
    before = preview(page, osf_id, tag, di_id)
    try:
        page.call("di_update", filters={"id": di_id},
                  arguments={"__tags_changes__": {"create": [tag]}})  # fmt: skip
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return _board(page, osf, form, before, status=refusal_status(exc))
    version = str(target[0].get("version") or di_id)
    page.flash("ok", page.t("Tag {tag} is now on version {version}.").format(
        tag=tag, version=version))  # fmt: skip
    expiry = {k: v for k, v in (("expiration_soft", soft), ("expiration_hard", hard)) if v}
    if expiry and before.affected:
        ids = [int(vm["id"]) for vm in before.affected]
        try:
            page.call("vm_update", filters={"id": ids}, arguments=expiry)
        except WatError as exc:
            reason = refusal_text(exc)
            page.flash("error", page.t("The expiry was not set: {reason}").format(reason=reason))
            return _board(page, osf, form, before, status=400)
        page.flash("ok", page.t("Expiry set on {count} VMs.").format(count=len(ids)))
    return _board(page, osf, {**form, "expire_soft": "", "expire_hard": ""}, None)
