"""Importing an image file as a new DI: check it, create the DI (audited like any
``di_create``), move the file into ``images/<id>-<name>``, mark it ready and publish
it. A publish that is refused (a tag fixed elsewhere) leaves the DI ``ready`` with
the reason in ``status_message``; the error is reported."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from qvd.api.actions.audit import AuditEntry, write_audit
from qvd.api.actions.core import ActionRequest, Ctx
from qvd.api.actions.dispatch import run_action
from qvd.api.actions.principal import Principal
from qvd.api.errors import ApiError, Status
from qvd.api.services.dis import publish
from qvd.api.shell.state import AppState
from qvd.api.uploads.images import (
    check_image,
    check_name,
    copy_into,
    discard,
    images_dir,
    install,
)
from qvd.api.uploads.staging import open_staged
from qvd.db.models import Di, DiRuntime
from qvd.imagefile import Limits

__all__ = [
    "import_from_staging",
    "import_upload",
    "max_image_size",
    "unpack_limits",
    "upload_folder",
    "upload_name",
    "upload_reserve",
]


def max_image_size(state: AppState) -> int:
    """The largest image file an upload or staging import accepts, in bytes."""
    return state.config.get_int("api.di.upload.max_size")


def upload_reserve(state: AppState) -> int:
    """The bytes an upload or staging import must leave free on the images' disk."""
    return state.config.get_int("api.di.upload.reserve")


def unpack_limits(state: AppState) -> Limits:
    """What an LXC image may unpack to (the node checks the same tokens)."""
    return Limits(
        max_bytes=state.config.get_int("di.unpack.max_bytes"),
        max_members=state.config.get_int("di.unpack.max_members"),
    )


def _import(state: AppState, principal: Principal, arguments: dict[str, Any], tmp: Path,
            name: str) -> int:  # fmt: skip
    try:
        check_image(tmp, name, unpack_limits(state))
        args = dict(arguments)
        args.setdefault("disk_image", name)
        result = run_action(
            state.runner, principal, ActionRequest(action="di_create", arguments=args)
        )
    except BaseException:
        discard(tmp)
        raise
    di_id = int(result.rows[0]["id"])
    final = f"{di_id}-{name}"
    install(tmp, upload_folder(state) / final)
    with Session(state.engine) as session, session.begin():
        session.execute(update(Di).where(Di.id == di_id).values(path=final))
        session.execute(
            update(DiRuntime).where(DiRuntime.di_id == di_id).values(state="ready", percentage=100)
        )
    status = Status.OK
    try:
        with Session(state.engine) as session, session.begin():
            ctx = Ctx(session=session, principal=principal, config=state.config,
                      engine=state.engine)  # fmt: skip
            publish(ctx, di_id)
    except ApiError as exc:
        status = exc.code
        with Session(state.engine) as session, session.begin():
            session.execute(
                update(DiRuntime)
                .where(DiRuntime.di_id == di_id)
                .values(status_message=f"not published: {exc.message}")
            )
        raise
    finally:
        write_audit(
            state.engine, principal=principal, action="di_publish", type_of_action="exec",
            qvd_object="di", arguments=None, entries=[AuditEntry(di_id, final, status)],
            source=principal.source, address=principal.address,
        )  # fmt: skip
    return di_id


def upload_name(principal: Principal, arguments: dict[str, Any], filename: str) -> str:
    """The name an upload is imported under (``disk_image``, else the uploaded file's
    name), checked, once ``principal`` may create DIs. Cheap: the upload route asks it
    before it streams the file when it can, and ``import_upload`` asks again."""
    name = check_name(str(arguments.get("disk_image") or filename))
    principal.require("di.create.", what="uploading a DI")
    return name


def import_upload(
    state: AppState, principal: Principal, arguments: dict[str, Any], tmp: Path, filename: str
) -> int:
    """A DI from an uploaded file already streamed to ``tmp`` (a temporary file in the
    images directory, see ``qvd.api.uploads.form_stream``); ``tmp`` is removed if it fails."""
    try:
        name = upload_name(principal, arguments, filename)
    except BaseException:
        discard(tmp)
        raise
    return _import(state, principal, arguments, tmp, name)


def upload_folder(state: AppState) -> Path:
    """The images directory (made if missing): where an upload is streamed to."""
    return images_dir(state.config.get_path("path.storage.images"))


def import_from_staging(state: AppState, principal: Principal, arguments: dict[str, Any]) -> int:
    """A DI from a file in the administrator's part of ``path.storage.staging`` (copied,
    the original stays; see ``qvd.api.uploads.staging``)."""
    principal.require("di.create.", what="importing a DI")
    name = str(arguments.get("disk_image") or "")
    source, staged = open_staged(state.config.get_path("path.storage.staging"), principal, name)
    folder = upload_folder(state)
    with source:
        tmp = copy_into(
            source, folder, max_bytes=max_image_size(state),
            declared_size=os.fstat(source.fileno()).st_size, reserve=upload_reserve(state),
        )  # fmt: skip
    args = {**arguments, "disk_image": staged.file_name}
    return _import(state, principal, args, tmp, staged.file_name)
