"""Home quotas: each persistent home is a file system of its own.

A home of ``size_mib`` (the OSF's ``user_storage_size``) is a sparse ext4 image
``<homes>/.images/<key>.ext4`` loop-mounted (``nosuid,nodev``) on ``<homes>/<key>``
before the VM starts: writing past its size fails with ENOSPC inside the desktop, and
one user filling their home never fills the node's storage or another user's home.
The image only takes the blocks written. A larger ``user_storage_size`` grows the image
and the file system (``resize2fs``, while it is not mounted: online growth needs a
capability this machine kind does not give) at the next start; a smaller one is
refused (shrinking could lose files) and the home keeps its size, logged.

Chosen over project quotas because it needs nothing of the storage file system
(project quotas need ext4/XFS mounted with ``prjquota`` and the quota tools, which a
stock Debian root file system does not have); measured on this machine kind: creating
a 1 GiB home ~40 ms, mounting ~15 ms, unmounting ~25 ms (``bench/disk.py``).
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from qvd.hkd.backends.base import BackendError

__all__ = ["HomeError", "ensure_home", "home_image", "release_home"]

log = logging.getLogger("qvd.hkd.homefs")

_MIB = 1 << 20
_MOUNT_OPTIONS = "loop,nosuid,nodev,noatime"


class HomeError(BackendError):
    """A home could not be prepared; the message says what failed."""


def home_image(home: Path) -> Path:
    """Where the image of ``home`` lives."""
    return home.parent / ".images" / f"{home.name}.ext4"


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HomeError(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _mount_source(home: Path) -> str | None:
    """The device mounted on ``home`` (in this mount namespace), if any."""
    target = str(home)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            mountpoint = fields[4].replace("\\040", " ")
            if mountpoint == target:
                sep = fields.index("-")
                return fields[sep + 2]
    return None


def ensure_home(home: Path, size_mib: int, *, kind: str = "home") -> None:
    """Make ``home`` a mount of its own ``size_mib`` MiB file system (made, or grown,
    as needed). Idempotent: an already mounted home of the right size is left alone.
    ``kind`` names it in messages (the LXC backend bounds its overlay layers this way)."""
    if size_mib <= 0:
        raise HomeError(f"a {kind} quota must be positive, not {size_mib} MiB")
    image = home_image(home)
    image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(image.parent, 0o700)
    wanted = size_mib * _MIB
    grow = False
    try:
        fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        current = os.lstat(image).st_size
        if wanted > current:
            with open(image, "r+b") as f:
                f.truncate(wanted)
            grow = True
        elif wanted < current:
            log.warning("%s %s: keeps %d MiB (asked %d MiB: it never shrinks)",
                        kind, home.name, current // _MIB, size_mib)  # fmt: skip
    else:
        try:
            os.ftruncate(fd, wanted)
        finally:
            os.close(fd)
        try:
            _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                 "lazy_itable_init=1,lazy_journal_init=1", str(image))  # fmt: skip
        except HomeError:
            image.unlink(missing_ok=True)
            raise
    home.mkdir(parents=True, exist_ok=True)
    mounted = _mount_source(home) is not None
    if grow and mounted:
        log.warning("%s %s is in use: it grows to %d MiB once it is unmounted",
                    kind, home.name, size_mib)  # fmt: skip
    elif grow:
        _run("e2fsck", "-f", "-p", str(image))
        _run("resize2fs", str(image))
    if not mounted:
        _run("mount", "-t", "ext4", "-o", _MOUNT_OPTIONS, str(image), str(home))


def release_home(home: Path) -> None:
    """Unmount ``home`` if it is mounted (its image stays, with the user's files)."""
    if _mount_source(home) is not None:
        _run("umount", str(home))
