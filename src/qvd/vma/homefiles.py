"""Writing into a user's home as root without ever following the user's links.

The VMA runs as root inside the desktop and writes ``~/.Xauthority`` and creates
``~/.nx`` for the session's user. The user owns the home, so any name in it may be a
symlink (or a hard link) the user planted towards ``/etc/passwd`` or ``/etc/shadow``.
Every operation here therefore works relative to a descriptor of the home directory
opened with ``O_NOFOLLOW | O_DIRECTORY``; files are created under a fresh random name
with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a planted name cannot be reused), owned with
``fchown`` on the descriptor, and moved into place with ``renameat``, which replaces a
link instead of writing through it. Directories are opened with ``O_NOFOLLOW`` before
their owner changes; a link in their place is removed and a real directory made.

The HKD uses ``write_file_below`` for the same reason on the node: it writes the VMA's
secret into a VM's upper layer, which root inside a persistent desktop can fill with
links pointing at the node's own files.

Standard library only (the VMA runs on the image's own ``python3``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence

__all__ = [
    "HomeError",
    "ensure_private_dir",
    "open_home",
    "write_file_below",
    "write_private_file",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class HomeError(OSError):
    """A name in the home cannot be used safely (it is not what it must be)."""


def _plain_name(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise HomeError(errno.EINVAL, f"not a plain file name: {name!r}")
    return name


@contextlib.contextmanager
def open_home(path: str) -> Iterator[int]:
    """A descriptor of the directory ``path``; refused if its last component is a link."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise HomeError(exc.errno, f"{path} is not a real directory") from None
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def write_private_file(dir_fd: int, name: str, data: bytes, uid: int, gid: int) -> None:
    """Replace ``name`` in ``dir_fd`` by a new 0600 file holding ``data``, owned by uid:gid.

    Whatever ``name`` was (a link, a hard link to a system file) is replaced as a
    directory entry; nothing outside ``dir_fd`` is opened or written.
    """
    _plain_name(name)
    tmp = f".{name}.qvd-{secrets.token_hex(6)}"
    fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _open_subdir(dir_fd: int, name: str) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    # a link or a file in the place of the directory: remove the entry, never its target
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        raise HomeError(errno.EEXIST, f"{name} cannot be opened as a directory")
    os.unlink(name, dir_fd=dir_fd)
    return None


def ensure_private_dir(dir_fd: int, name: str, uid: int, gid: int, mode: int = 0o700) -> None:
    """Make ``name`` in ``dir_fd`` a real directory owned by uid:gid (never via a link)."""
    _plain_name(name)
    fd = _open_subdir(dir_fd, name)
    if fd is None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=dir_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)  # raced by a link: ELOOP, refused
    try:
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def write_file_below(
    root: str,
    parts: Sequence[str],
    name: str,
    data: bytes,
    *,
    uid: int = -1,
    gid: int = -1,
    dir_mode: int = 0o755,
) -> None:
    """Write ``root/<parts…>/name`` (0600) without following any link below ``root``.

    Missing directories are made with ``dir_mode``; a link or a file where a directory
    must be is refused (``HomeError``), never followed or removed.
    """
    for part in (*parts, name):
        _plain_name(part)
    with open_home(root) as root_fd:
        fd = os.dup(root_fd)
        try:
            for part in parts:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_mode, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise HomeError(exc.errno, f"{part} is not a real directory") from None
                    raise
                os.close(fd)
                fd = child
            os.fchmod(fd, dir_mode)
            write_private_file(fd, name, data, uid, gid)
        finally:
            os.close(fd)
