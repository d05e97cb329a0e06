"""File operations of the HKD in places a tenant controls, without following links.

A persistent upper layer is written by the desktop's root between runs: any component
of ``etc/qvd/vma.secret`` may have become a symbolic link to a host file. Every
component is opened with ``O_NOFOLLOW`` relative to its parent's descriptor; a link
anywhere is refused, and the secret file itself is always a new inode (unlinked then
created with ``O_EXCL``), so neither a symbolic nor a hard link is ever written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from qvd.hkd.backends.base import TerminalBackendError

__all__ = ["UnsafePath", "shift_owners", "write_private_file"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(TerminalBackendError):
    """A path the HKD writes into leads through a link or a non-directory."""


@contextlib.contextmanager
def _dir_fd(path: Path) -> Iterator[int]:
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise UnsafePath(f"{path}: {exc.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _open_child_dir(parent: int, name: str, where: str, owner: tuple[int, int]) -> int:
    """The directory ``name`` under ``parent``, made (mode 0755, ``owner``) if missing."""
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        pass
    else:
        os.chown(name, *owner, dir_fd=parent, follow_symlinks=False)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{where}/{name} is a link or not a directory: refused") from None
        raise


def write_private_file(
    root: Path, relative: Path, data: bytes, owner: tuple[int, int], *, mode: int = 0o600
) -> None:
    """Write ``root/relative`` (``mode``, default 0600, and ``owner``) without following
    any link below ``root``; missing directories are made with mode 0755 and ``owner``."""
    *dirs, name = relative.parts
    if not name or any(part in ("", ".", "..") or "/" in part for part in relative.parts):
        raise UnsafePath(f"{relative}: not a plain relative path")
    with _dir_fd(root) as top:
        fd = os.dup(top)
        try:
            where = str(root)
            for part in dirs:
                child = _open_child_dir(fd, part, where, owner)
                os.close(fd)
                fd = child
                where = f"{where}/{part}"
            try:
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                raise UnsafePath(f"{where}/{name} is a directory: refused") from None
            except PermissionError as exc:  # EPERM for a directory on Linux
                raise UnsafePath(f"{where}/{name}: {exc.strerror}") from None
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            out = os.open(name, flags, 0o600, dir_fd=fd)
            try:
                os.fchown(out, *owner)
                os.fchmod(out, mode)
                os.write(out, data)
            finally:
                os.close(out)
        finally:
            os.close(fd)


def shift_owners(tree: Path, old_start: int, new_start: int, count: int) -> int:
    """Move the owners of everything under ``tree`` (itself included, links not
    followed) from the range at ``old_start`` to the one at ``new_start``; ids outside
    the old range are left. Modes are written back, since a chown clears setuid bits.
    Returns the number of entries changed. For a layer written under another range."""

    def moved(value: int) -> int:
        return value - old_start + new_start if old_start <= value < old_start + count else value

    changed = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        entries = [Path(dirpath)] if Path(dirpath) == tree else []
        entries += [Path(dirpath, n) for n in (*dirnames, *filenames)]
        for entry in entries:
            info = entry.lstat()
            uid, gid = moved(info.st_uid), moved(info.st_gid)
            if (uid, gid) == (info.st_uid, info.st_gid):
                continue
            os.lchown(entry, uid, gid)
            if not stat.S_ISLNK(info.st_mode):
                entry.chmod(stat.S_IMODE(info.st_mode))
            changed += 1
    return changed
