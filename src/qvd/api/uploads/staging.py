"""The staging directory, per tenant.

``path.storage.staging`` holds image files an operator drops in for import. A tenant
administrator sees and imports only the files of their tenant's own subdirectory,
``<staging>/<tenant id>/``; a superadministrator sees the top level (``a.tar.zst``)
and every tenant's subdirectory (``12/a.tar.zst``) and imports from any of them.

A staged file is a regular file, never a symbolic link (a tenant's subdirectory may
be a drop box the tenant writes to; a link there would reach another tenant's files
or the node's): the listing skips links and the import opens the subdirectory and the
file with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from qvd.api.actions.principal import Principal
from qvd.api.errors import ApiError, InvalidRequest, NotFound, Status
from qvd.api.uploads.images import check_name

__all__ = ["StagedFile", "list_staged", "open_staged"]

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a FIFO never blocks us
_TENANT_NAME = re.compile(r"^([0-9]{1,9})/([^/]+)$")


@dataclass(frozen=True, slots=True)
class StagedFile:
    name: str  # as listed and as given to an import: ``a.tar.zst`` or ``12/a.tar.zst``
    file_name: str  # the DI's image name: ``a.tar.zst``
    tenant_id: int  # whose subdirectory (0: the top level, the superadministrators')


def _missing(staging: Path) -> NotFound:
    return NotFound(f"the staging directory {staging} does not exist", Status.NO_STAGING_DIR)


def _regular_names(folder: int) -> Iterator[str]:
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                name = check_name(entry.name)
                regular = entry.is_file(follow_symlinks=False)
            except (InvalidRequest, OSError):
                continue
            if regular:
                yield name


@contextlib.contextmanager
def _open_dir(path: Path, parent: int | None = None) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    try:
        yield fd
    finally:
        os.close(fd)


def list_staged(staging: Path, principal: Principal) -> list[StagedFile]:
    """The files ``principal`` may import, sorted by name."""
    try:
        with _open_dir(staging) as top:
            if not principal.superadmin:
                own = _tenant_files(top, principal.tenant_id)
                plain = [StagedFile(f.file_name, f.file_name, f.tenant_id) for f in own]
                return sorted(plain, key=lambda f: f.name)
            files = [StagedFile(n, n, 0) for n in _regular_names(top)]
            with os.scandir(top) as entries:
                tenants = [
                    int(e.name)
                    for e in entries
                    if e.name.isdigit() and len(e.name) <= 9 and e.is_dir(follow_symlinks=False)
                ]
            for tenant_id in tenants:
                files += _tenant_files(top, tenant_id)
    except (FileNotFoundError, NotADirectoryError):
        raise _missing(staging) from None
    except OSError as exc:
        raise ApiError(f"cannot read the staging directory {staging}: {exc}", 2270) from None
    return sorted(files, key=lambda f: f.name)


def _tenant_files(top: int, tenant_id: int) -> list[StagedFile]:
    try:
        with _open_dir(Path(str(tenant_id)), top) as folder:
            return [StagedFile(f"{tenant_id}/{n}", n, tenant_id) for n in _regular_names(folder)]
    except (FileNotFoundError, NotADirectoryError):
        return []  # nothing staged for this tenant (a link here is not followed)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the tenant's subdirectory is a symbolic link
            return []
        raise


def _locate(name: str, principal: Principal) -> tuple[int, str]:
    """(tenant subdirectory or 0 for the top level, file name) of an import's name."""
    match = _TENANT_NAME.match(name)
    if match is None:
        file_name = check_name(name)
        return (0 if principal.superadmin else principal.tenant_id), file_name
    tenant_id, file_name = int(match.group(1)), check_name(match.group(2))
    if not principal.superadmin and tenant_id != principal.tenant_id:
        raise NotFound(f"{name} is not in your staging directory", Status.NOT_IN_STAGING)
    return tenant_id, file_name


def open_staged(staging: Path, principal: Principal, name: str) -> tuple[BinaryIO, StagedFile]:
    """The staged file ``name`` opened for reading (never through a link) and what it
    is; 6xxx/2230/2240 when ``principal`` may not or it is not there."""
    tenant_id, file_name = _locate(name, principal)
    try:
        with _open_dir(staging) as top:
            if tenant_id == 0:
                fd = os.open(file_name, _OPEN_FLAGS, dir_fd=top)
            else:
                with _open_dir(Path(str(tenant_id)), top) as folder:
                    fd = os.open(file_name, _OPEN_FLAGS, dir_fd=folder)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if not staging.is_dir():
            raise _missing(staging) from None
        raise NotFound(f"{name} is not in the staging directory", Status.NOT_IN_STAGING) from exc
    except OSError as exc:
        raise NotFound(
            f"{name} is not a regular file in the staging directory ({exc.strerror})",
            Status.NOT_IN_STAGING,
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotFound(f"{name} is not a regular file in the staging directory",
                       Status.NOT_IN_STAGING)  # fmt: skip
    return os.fdopen(fd, "rb"), StagedFile(name, file_name, tenant_id)
