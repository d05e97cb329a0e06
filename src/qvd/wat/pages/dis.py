"""Disk images: the list, a DI's page (facts, tags, VMs, properties, edit, delete), the
upload page (the browser streams the file to the API's ``/api/v1/dis/upload``, see
``static/js/dis.js``) and the staging import page; an OSF's tag board is
:mod:`qvd.wat.pages.di_tags`.

Everything goes through the action port: ``di_get_list``, ``di_update``, ``di_delete``,
``dis_in_staging``, ``osf_get_list``, ``vm_get_list``. The upload and the staging
import are the API's REST routes, called by the page's script with the session cookie
and the ``X-CSRF-Token`` header (the WAT never holds the file)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import RedirectResponse, Response

from qvd.wat.lists import Column, ListView, MassAction, list_router
from qvd.wat.pages import di_tags
from qvd.wat.pages.di_tags import shows_refusals
from qvd.wat.pages.objectpages import (
    ObjectKind,
    known_id,
    missing,
    refusal_page,
    refusal_status,
    refusal_text,
    reloaded_buttons_router,
    run_button,
)
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = ["VIEW", "load_di", "osf_options", "router", "shown_time"]

VIEW = ListView(
    object="di",
    path="/dis",
    title="Disk images",
    list_action="di_get_list",
    columns=(
        Column("id", "Id", "number", acl="di.see.id"),
        Column("disk_image", "Image file", link="/dis/{id}"),
        Column("osf_name", "OS flavour", link="/osfs/{osf_id}", acl="di.see.osf"),
        Column("version", "Version", acl="di.see.version"),
        Column("tags", "Tags", "list", sortable=False, acl="di.see.tags"),
        Column("state", "State", "state"),
        Column("blocked", "Blocked", "bool", acl="di.see.block"),
    ),
    search=("disk_image", "version"),
    detail="/dis/{id}",
    create="/dis/new",
    live=("state", "blocked"),
    mass=(
        MassAction("block", "Block", "di_update", "di.update.block", {"blocked": True}),
        MassAction("unblock", "Unblock", "di_update", "di.update.block", {"blocked": False}),
        MassAction("delete", "Delete", "di_delete", "di.delete.", confirm=True),
    ),
    default_order=(("id", True),),
    name_field="disk_image",
)

VM_FIELDS = ("id", "name", "user_name", "state", "di_tag", "di_id", "di_id_in_use", "blocked")
MAX_TEXT = 32768
MAX_VMS_SHOWN = 200

router = APIRouter(include_in_schema=False)
router.include_router(list_router(VIEW))
router.include_router(di_tags.router)


KIND = ObjectKind(
    "di",
    "/dis",
    "Disk image",
    gone="There is no disk image {id} that you may see.",
    gone_heading="Disk image not found",
    back_label="Back to the disk images",
)


def osf_options(page: Page) -> list[tuple[int, str]]:
    """(id, name) of the OSFs a DI may be created for (the chosen tenant's)."""
    answer = page.call(
        "osf_get_list", filters=page.tenant_filter() or None, fields=["id", "name"],
        order_by=[("name", False)], limit=1000,
    )  # fmt: skip
    return [(int(r["id"]), str(r["name"])) for r in answer.rows]


def _no_create(page: Page) -> Response:
    return refusal_page(page, page.t("Not allowed"), page.t("You may not create disk images."),
                        403, back="/dis", back_label="Back to the disk images")  # fmt: skip


@router.get("/dis/new")
@shows_refusals
def upload_page(page: ReadPage) -> Response:
    """The upload form (``#create``); the file goes to the API from the browser."""
    if not page.can("di.create."):
        return _no_create(page)
    return render(page, "dis/new.html", {"osfs": osf_options(page)})


@router.get("/dis/staging")
@shows_refusals
def staging_page(page: ReadPage) -> Response:
    """The files in staging this administrator may import, and the import form."""
    if not page.can("di.create."):
        return _no_create(page)
    files: list[str] = []
    error = None
    try:
        files = [str(r["name"]) for r in page.call("dis_in_staging").rows]
    except WatError as exc:
        error = exc.message
    return render(
        page,
        "dis/staging.html",
        {
            "files": files,
            "file_options": [(f, f) for f in files],
            "error": error,
            "osfs": osf_options(page),
        },
    )


def _missing(page: Page, di_id: int) -> Response:
    return missing(page, KIND, di_id)


def load_di(page: Page, di_id: int) -> dict[str, Any] | None:
    """The DI ``di_id`` with every field this administrator may see (its tags as
    ``tag_objects``: ``{tag, fixed}``), or None when there is none they may see."""
    if not known_id(di_id):
        return None
    rows = page.call("di_get_list", filters={"id": di_id}, limit=1).rows
    if not rows:
        return None
    di = dict(rows[0])
    for key in ("state_ts", "creation_date"):
        if key in di:
            di[key] = shown_time(di[key])
    if page.can("di.see.tags"):
        tagged = page.call(
            "di_get_list", filters={"id": di_id}, fields=["id", "tag_objects"], limit=1
        ).rows
        di["tag_objects"] = tagged[0]["tag_objects"] if tagged else []
    return di


def shown_time(value: Any) -> str | None:
    """A timestamp as the page shows it: ``2026-12-05 03:26:44 UTC``."""
    if value is None:
        return None
    try:
        when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _vms_of(page: Page, di_id: int) -> tuple[list[dict[str, Any]], str | None]:
    """VMs that boot this DI through their tag or run it now."""
    try:
        answer = page.call(
            "vm_get_list",
            filters={"-or": [{"di_id": di_id}, {"di_id_in_use": di_id}]},
            fields=list(VM_FIELDS), order_by=[("name", False)], limit=MAX_VMS_SHOWN,
        )  # fmt: skip
    except WatError as exc:
        return [], exc.message
    return answer.rows, None


def _detail(
    page: Page, di: dict[str, Any], *, form: dict[str, Any] | None = None, status: int = 200
) -> Response:
    vms, vm_error = _vms_of(page, int(di["id"]))
    values = form if form is not None else di
    return render(
        page, "dis/detail.html",
        {"di": di, "vms": vms, "vm_error": vm_error, "form": values},
        status=status,
    )  # fmt: skip


@router.get("/dis/{di_id:int}")
@shows_refusals
def detail_page(di_id: int, page: ReadPage) -> Response:
    di = load_di(page, di_id)
    if di is None:
        return _missing(page, di_id)
    return _detail(page, di)


def _seconds(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 10:
        raise ValueError(text)
    return int(text)


@router.post("/dis/{di_id:int}")
@shows_refusals
def edit(
    di_id: int,
    page: MutatingPage,
    description: Annotated[str, Form(max_length=MAX_TEXT)] = "",
    blocked: Annotated[str, Form(max_length=8)] = "",
    auto_publish: Annotated[str, Form(max_length=8)] = "",
    expiration_time_soft: Annotated[str, Form(max_length=16)] = "",
    expiration_time_hard: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Save the edit form (``#edit``): description, blocked, auto-publish and the
    expiration delays (seconds) given to VMs when this DI is published."""
    di = load_di(page, di_id)
    if di is None:
        return _missing(page, di_id)
    typed = {
        **di, "description": description, "blocked": blocked == "1",
        "auto_publish": auto_publish == "1", "expiration_time_soft": expiration_time_soft,
        "expiration_time_hard": expiration_time_hard,
    }  # fmt: skip
    arguments: dict[str, Any] = {}
    if page.can("di.update.description"):
        arguments["description"] = description or None
    if page.can("di.update.block"):
        arguments["blocked"] = blocked == "1"
    if page.can("di.update.auto-publish"):
        arguments["auto_publish"] = auto_publish == "1"
    if page.can("di.update.vms-expiration"):
        try:
            arguments["expiration_time_soft"] = _seconds(expiration_time_soft)
            arguments["expiration_time_hard"] = _seconds(expiration_time_hard)
        except ValueError:
            page.flash("error", page.t("Expiration delays are whole seconds."))
            return _detail(page, di, form=typed, status=400)
    try:
        page.call("di_update", filters={"id": di_id}, arguments=arguments)
    except WatError as exc:
        page.flash("error", refusal_text(exc))
        return _detail(page, di, form=typed, status=refusal_status(exc))
    return RedirectResponse(f"/dis/{di_id}", status_code=303)


def _refused(page: Page, di_id: int, exc: WatError) -> Response:
    """The DI's page again with the API's reason (a refused button)."""
    di = load_di(page, di_id)
    if di is None:
        return _missing(page, di_id)
    page.flash("error", refusal_text(exc))
    return _detail(page, di, status=refusal_status(exc))


@router.post("/dis/{di_id:int}/delete")
@shows_refusals
def delete(di_id: int, page: MutatingPage) -> Response:
    return run_button(page, KIND, di_id, "di_delete", None, None, _refused)


router.include_router(reloaded_buttons_router(KIND))
