"""Files and directories a backend keeps for itself on the node: root's, nobody else's.

Both backends keep their storage parents and runtime state this way (LXC's basefs,
overlay and home parents and container configs; KVM's disks, runtime directories,
identity and record files).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from qvd.hkd.backends.base import TerminalBackendError

__all__ = ["private_dir", "write_private"]


def private_dir(path: Path) -> None:
    """``path`` exists as a directory owned by root with mode 0700 (fixed if not); a
    link or anything else in its place is refused."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise TerminalBackendError(f"{path} is not a directory")
    if (info.st_uid, info.st_gid) != (0, 0):
        os.chown(path, 0, 0)
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)


def write_private(path: Path, data: bytes) -> None:
    """``data`` in a fresh 0600 file at ``path``, put in place whole (a reader never
    sees half of it); an old file, or a link, at ``path`` is replaced, never written
    through."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.rename(path)
