"""Checking and importing DI image files (upload and staging).

An upload is streamed to a temporary file next to the images (the request body is
never held in memory), checked, then renamed to ``images/<di_id>-<name>`` and the
DI published. Checks: the name says a known format (``.tar``, ``.tar.gz``/``.tgz``,
``.tar.xz``, ``.tar.zst`` for LXC; ``.qcow2`` for KVM), the size is within
``api.di.upload.max_size`` and the disk has room, a qcow2 file starts with its magic, and
every member of a tarball passes ``qvd.imagefile.check_tar`` (the same check the node
daemon makes before it unpacks: nothing outside the root, no link escaping it, nothing
written through a link, no device node outside ``dev/``).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path, PurePosixPath
from typing import IO, Any

from qvd.api.errors import ApiError, InvalidRequest, NotFound, Status
from qvd.imagefile import ImageRejected, check_tar

__all__ = [
    "IMAGE_SUFFIXES",
    "check_image",
    "check_name",
    "copy_into",
    "discard",
    "images_dir",
    "install",
    "staged_file",
    "too_large",
]

IMAGE_SUFFIXES = (".tar.zst", ".tar.gz", ".tgz", ".tar.xz", ".tar", ".qcow2")
_CHUNK = 1 << 20
_QCOW2_MAGIC = b"QFI\xfb"


def check_name(name: str) -> str:
    """A plain file name with a known image suffix."""
    base = PurePosixPath(name).name
    if not base or base != name or base.startswith(".") or "\x00" in base or len(base) > 200:
        raise InvalidRequest(f"{name!r} is not a plain file name", Status.BAD_ARGUMENT_VALUE)
    if not base.endswith(IMAGE_SUFFIXES):
        raise InvalidRequest(
            f"{name!r} is not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})",
            Status.BAD_ARGUMENT_VALUE,
        )
    return base


def images_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApiError(f"cannot create the images directory {path}: {exc}", 2220) from None
    return path


def too_large(size: int, max_bytes: int, what: str = "the image") -> InvalidRequest:
    """The 2250 refusal of an image over ``api.di.upload.max_size``."""
    return InvalidRequest(
        f"{what} ({size} bytes) is larger than the limit of {max_bytes} bytes "
        "(api.di.upload.max_size)",
        Status.UPLOAD_FAILED,
    )


def copy_into(
    source: IO[bytes], folder: Path, *, max_bytes: int, declared_size: int | None = None
) -> Path:
    """Stream ``source`` into a new temporary file in ``folder`` (at most ``max_bytes``,
    and only while the disk has room); the caller renames or removes it."""
    if declared_size is not None:
        if declared_size > max_bytes:
            raise too_large(declared_size, max_bytes)
        free = shutil.disk_usage(folder).free
        if declared_size > free:
            raise InvalidRequest(
                f"the image ({declared_size} bytes) does not fit in the {free} bytes free "
                f"in {folder}",
                Status.UPLOAD_FAILED,
            )
    tmp = folder / f".upload-{secrets.token_hex(8)}"
    written = 0
    try:
        with open(tmp, "xb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise too_large(written, max_bytes)
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if written == 0:
        tmp.unlink(missing_ok=True)
        raise InvalidRequest("the image file is empty", Status.UPLOAD_FAILED)
    return tmp


def check_image(path: Path, name: str) -> int:
    """Validate an image file; returns the number of tar members (0 for qcow2)."""
    if name.endswith(".qcow2"):
        with open(path, "rb") as f:
            if f.read(4) != _QCOW2_MAGIC:
                raise InvalidRequest(f"{name}: not a qcow2 image (bad magic)", Status.UPLOAD_FAILED)
        return 0
    try:
        return check_tar(path, name=name).members
    except ImageRejected as exc:
        reason = str(exc) if str(exc).startswith(name) else f"{name}: {exc}"
        raise InvalidRequest(reason, Status.UPLOAD_FAILED) from None


def staged_file(staging: Path, name: str) -> Path:
    path = staging / check_name(name)
    if not staging.is_dir():
        raise NotFound(f"the staging directory {staging} does not exist", Status.NO_STAGING_DIR)
    if not path.is_file():
        raise NotFound(f"{name} is not in the staging directory {staging}", Status.NOT_IN_STAGING)
    return path


def install(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
        final.chmod(0o644)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ApiError(f"cannot move the image into place: {exc}", Status.MOVE_FAILED) from None


def discard(path: Any) -> None:
    if isinstance(path, Path):
        path.unlink(missing_ok=True)
