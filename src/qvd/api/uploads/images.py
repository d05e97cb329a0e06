"""Checking and importing DI image files (upload and staging).

An upload is streamed, as it arrives, to a temporary file next to the images
(:class:`ImageSpool`: written once, never held in memory whole), checked, then renamed
to ``images/<di_id>-<name>`` and the DI published. Checks: the name says a known format
(``.tar``, ``.tar.gz``/``.tgz``, ``.tar.xz``, ``.tar.zst`` for LXC; ``.qcow2`` for KVM),
the size is within ``api.di.upload.max_size`` and the disk has room, a file whose content
is a qcow2 image is named ``.qcow2`` (and the other way round) and passes
``qvd.imagefile.check_qcow2`` (no backing file, no external data file, no encryption,
an honest header, a virtual size within ``di.unpack.max_bytes``: the node checks the
same before QEMU opens it), and every member of a tarball passes
``qvd.imagefile.check_tar`` (the same check the node daemon makes before it unpacks:
nothing outside the root, no link escaping it, nothing written through a link, no
device node outside ``dev/``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from qvd.api.errors import ApiError, InvalidRequest, Status
from qvd.config.names import DI_FILE_NAME, shown
from qvd.imagefile import IMAGE_SUFFIXES as TAR_SUFFIXES
from qvd.imagefile import (
    ImageRejected,
    Limits,
    Qcow2TooLarge,
    check_qcow2_fd,
    check_tar,
    is_qcow2,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageSpool",
    "check_image",
    "check_name",
    "copy_into",
    "discard",
    "images_dir",
    "install",
    "no_room",
    "room_for_images",
    "too_large",
]

IMAGE_SUFFIXES = (*TAR_SUFFIXES, ".qcow2")
_CHUNK = 1 << 20
_RECHECK = 64 << 20  # bytes between two looks at the disk's free space during an upload


def check_name(name: str) -> str:
    """A plain file name with a known image suffix (the DI file name rule of
    qvd.config.names, at most 200 characters: the stored name gets an id prefix)."""
    base = PurePosixPath(name).name
    why = DI_FILE_NAME.problem(name)
    if why is None and len(name) > 200:
        why = "it is longer than 200 characters"
    if why is not None or base != name:
        raise InvalidRequest(
            f"{shown(name)} is not a plain file name: {why or 'it is a path'}",
            Status.BAD_ARGUMENT_VALUE,
        )
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
        raise ApiError(
            f"cannot create the images directory {path}: {exc}", Status.NO_IMAGES_DIR
        ) from None
    return path


def too_large(size: int, max_bytes: int, what: str = "the image") -> InvalidRequest:
    """The 2250 refusal of an image over ``api.di.upload.max_size``."""
    return InvalidRequest(
        f"{what} ({size} bytes) is larger than the limit of {max_bytes} bytes "
        "(api.di.upload.max_size)",
        Status.UPLOAD_FAILED,
    )


def no_room(
    size: int,
    free: int,
    folder: Path,
    *,
    so_far: bool = False,
    what: str = "the image",
    reserve: int = 0,
) -> InvalidRequest:
    """The 2250 refusal of an image the disk has no room for (``free`` is what the
    file system has; ``reserve`` what must stay free, ``api.di.upload.reserve``)."""
    amount = f"at least {size}" if so_far else str(size)
    return InvalidRequest(
        f"{what} ({amount} bytes) does not fit in the {free} bytes free in {folder} "
        f"while leaving {reserve} bytes free (api.di.upload.reserve)",
        Status.UPLOAD_FAILED,
    )


def room_for_images(folder: Path, reserve: int) -> tuple[int, int]:
    """(bytes free on the file system of ``folder``, of which an image may take)."""
    free = shutil.disk_usage(folder).free
    return free, max(free - reserve, 0)


class ImageSpool:
    """A new temporary file ``.upload-<random>`` in ``folder`` that takes an image
    chunk by chunk, so it is written once, where it will stay.

    ``add`` counts a chunk against ``max_bytes`` and the room the disk had when the
    file was made less ``reserve``, refusing (2250) before a byte too many is kept (it
    looks at the disk again every :data:`_RECHECK` bytes, for uploads running at once);
    ``flush`` writes what was added (blocking: async code calls it from a thread);
    ``finish`` closes the file and gives its path for the caller to rename or remove;
    ``discard`` removes it (every failure path calls it)."""

    def __init__(
        self,
        folder: Path,
        *,
        max_bytes: int,
        declared_size: int | None = None,
        reserve: int = 0,
    ) -> None:
        if declared_size is not None and declared_size > max_bytes:
            raise too_large(declared_size, max_bytes)
        self.folder = folder
        self.max_bytes = max_bytes
        self.reserve = reserve
        self.disk_free, self.free = room_for_images(folder, reserve)
        self._checked_at = 0
        if declared_size is not None and declared_size > self.free:
            raise no_room(declared_size, self.disk_free, folder, reserve=reserve)
        self.path = folder / f".upload-{secrets.token_hex(8)}"
        self.size = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        try:
            self._out: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 (finish closes it)
        except OSError as exc:
            raise ApiError(
                f"cannot write in the images directory {folder}: {exc.strerror or exc}",
                Status.NO_IMAGES_DIR,
            ) from None

    def add(self, chunk: bytes) -> bool:
        """Take ``chunk`` (kept in memory until ``flush``); True when enough is
        pending that it is time to flush."""
        size = self.size + len(chunk)
        if size > self.max_bytes:
            raise too_large(size, self.max_bytes)
        if size - self._checked_at >= _RECHECK:
            disk_free, room = room_for_images(self.folder, self.reserve)
            self.disk_free, self.free = disk_free, room + self.size - self._pending_size
            self._checked_at = size
        if size > self.free:
            raise no_room(size, self.disk_free, self.folder, so_far=True, reserve=self.reserve)
        self.size = size
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        return self._pending_size >= _CHUNK

    def flush(self) -> None:
        if not self._pending:
            return
        assert self._out is not None, "the spool is closed"
        data, self._pending, self._pending_size = b"".join(self._pending), [], 0
        try:
            self._out.write(data)
        except OSError as exc:
            raise self._write_error(exc) from None

    def finish(self) -> Path:
        """The complete file (closed), or 2250 if it is empty."""
        self.flush()
        try:
            self._close()
        except OSError as exc:
            raise self._write_error(exc) from None
        if self.size == 0:
            self.discard()
            raise InvalidRequest("the image file is empty", Status.UPLOAD_FAILED)
        return self.path

    def discard(self) -> None:
        self._pending, self._pending_size = [], 0
        with contextlib.suppress(OSError):
            self._close()
        self.path.unlink(missing_ok=True)

    def _write_error(self, exc: OSError) -> InvalidRequest:
        return InvalidRequest(
            f"cannot write the image in {self.folder}: {exc.strerror or exc}",
            Status.UPLOAD_FAILED,
        )

    def _close(self) -> None:
        out, self._out = self._out, None
        if out is not None:
            out.close()


def copy_into(
    source: IO[bytes],
    folder: Path,
    *,
    max_bytes: int,
    declared_size: int | None = None,
    reserve: int = 0,
) -> Path:
    """Stream ``source`` into a new temporary file in ``folder`` (at most ``max_bytes``,
    and only while the disk keeps ``reserve`` free); the caller renames or removes it."""
    spool = ImageSpool(folder, max_bytes=max_bytes, declared_size=declared_size, reserve=reserve)
    try:
        while chunk := source.read(_CHUNK):
            spool.add(chunk)
            spool.flush()
        return spool.finish()
    except BaseException:
        spool.discard()
        raise


def check_image(path: Path, name: str, limits: Limits) -> int:
    """Validate an image file (its format from its content, which its name must
    agree with); returns the number of tar members (0 for qcow2)."""
    qcow2 = is_qcow2(path)
    if qcow2 != name.endswith(".qcow2"):
        why = (
            "is a qcow2 image: its name must end with .qcow2"
            if qcow2
            else "not a qcow2 image (bad magic)"
        )
        raise InvalidRequest(f"{name}: {why}", Status.UPLOAD_FAILED)
    try:
        if qcow2:
            with open(path, "rb") as f:  # a spool or staging copy of ours: no link
                check_qcow2_fd(f.fileno(), name, max_virtual_bytes=limits.max_bytes)
            return 0
        return check_tar(path, name=name, limits=limits).members
    except Qcow2TooLarge as exc:
        raise InvalidRequest(f"{exc} (di.unpack.max_bytes)", Status.UPLOAD_FAILED) from None
    except ImageRejected as exc:
        reason = str(exc) if str(exc).startswith(name) else f"{name}: {exc}"
        raise InvalidRequest(reason, Status.UPLOAD_FAILED) from None


def install(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
        final.chmod(0o644)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ApiError(f"cannot move the image into place: {exc}", Status.MOVE_FAILED) from None


def discard(path: Path) -> None:
    path.unlink(missing_ok=True)
