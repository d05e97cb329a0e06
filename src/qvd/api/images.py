"""Checking and importing DI image files (upload and staging).

An upload is streamed to a temporary file next to the images (the request body is
never held in memory), checked, then renamed to ``images/<di_id>-<name>`` and the
DI published. Checks: the name says a known format (``.tar``, ``.tar.gz``/``.tgz``,
``.tar.xz``, ``.tar.zst`` for LXC; ``.qcow2`` for KVM), the size is within
:data:`MAX_IMAGE_BYTES` and the disk has room, a qcow2 file starts with its magic, and
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
    "MAX_IMAGE_BYTES",
    "check_image",
    "check_name",
    "copy_into",
    "discard",
    "images_dir",
    "install",
    "staged_file",
]

IMAGE_SUFFIXES = (".tar.zst", ".tar.gz", ".tgz", ".tar.xz", ".tar", ".qcow2")
MAX_IMAGE_BYTES = 64 * 2**30
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


def copy_into(source: IO[bytes], folder: Path, declared_size: int | None = None) -> Path:
    """Stream ``source`` into a new temporary file in ``folder`` (size and disk space
    checked); the caller renames or removes it."""
    free = shutil.disk_usage(folder).free
    if declared_size is not None and declared_size > min(MAX_IMAGE_BYTES, free):
        raise InvalidRequest(
            f"the image ({declared_size} bytes) is larger than the limit or the free space "
            f"({min(MAX_IMAGE_BYTES, free)} bytes)",
            Status.UPLOAD_FAILED,
        )
    tmp = folder / f".upload-{secrets.token_hex(8)}"
    written = 0
    try:
        with open(tmp, "xb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > MAX_IMAGE_BYTES:
                    raise InvalidRequest(
                        f"the image is larger than {MAX_IMAGE_BYTES} bytes", Status.UPLOAD_FAILED
                    )
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
