"""Checking an LXC image tarball member by member, streaming (no file is written).

Refused, with the member's name and the reason:
- names that are absolute or climb out with ``..``;
- device nodes outside ``dev/`` (``dev/`` itself is not unpacked: LXC gives every
  container a fresh ``/dev``);
- hard links whose target is outside the image or not an earlier member;
- symbolic links whose target, resolved inside the image, climbs above its root;
- members that would be written through a symbolic link (``x -> /etc`` then
  ``x/passwd``), the classic way a tarball writes outside its destination;
- an archive that is not a tar stream at all, or is truncated.
Absolute symbolic-link targets are normal in a root file system (they resolve inside
the container) and are accepted as long as nothing is written through them.
"""

from __future__ import annotations

import posixpath
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["IMAGE_SUFFIXES", "ImageRejected", "TarReport", "check_tar", "decompressor_for"]

IMAGE_SUFFIXES = (".tar.zst", ".tar.gz", ".tgz", ".tar.xz", ".tar")


class ImageRejected(Exception):
    """The image is unsafe or unreadable; ``str()`` says which member and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TarReport:
    members: int
    bytes: int
    skipped_dev: int


def decompressor_for(path: Path) -> list[str] | None:
    """The command that turns the file into a plain tar stream (None: it is one)."""
    name = path.name
    if name.endswith(".tar.zst"):
        return ["zstd", "-dcq"]
    if name.endswith((".tar.gz", ".tgz")):
        return ["gzip", "-dc"]
    if name.endswith(".tar.xz"):
        return ["xz", "-dc"]
    if name.endswith(".tar"):
        return None
    raise ImageRejected(
        f"{path.name}: not an LXC image (expected one of {', '.join(IMAGE_SUFFIXES)})"
    )


@contextmanager
def tar_stream(path: Path, name: str | None = None) -> Iterator[IO[bytes]]:
    """A readable plain-tar byte stream of the image file (its format from ``name``,
    default the file's own name)."""
    command = decompressor_for(Path(name) if name else path)
    if command is None:
        with open(path, "rb") as f:
            yield f
        return
    with open(path, "rb") as source:
        proc = subprocess.Popen(
            command, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            yield proc.stdout
        finally:
            proc.stdout.close()
            _, err = proc.communicate()
            if proc.returncode not in (0, -13):  # -13: we stopped reading early (SIGPIPE)
                raise ImageRejected(
                    f"{name or path.name}: cannot decompress "
                    f"({err.decode(errors='replace').strip()})"
                )


def _clean(name: str) -> str:
    """A member name without its leading ``./``."""
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _climbs(path: str) -> bool:
    return posixpath.normpath(path).split("/")[0] == ".."


def in_dev(name: str) -> bool:
    clean = _clean(name)
    return clean == "dev" or clean.startswith("dev/")


def check_member(member: tarfile.TarInfo, symlinks: set[str], seen: set[str]) -> None:
    """Raise ImageRejected if writing ``member`` would be unsafe."""
    raw = member.name
    name = _clean(raw)
    if raw.startswith("/") or name.startswith("/"):
        raise ImageRejected(f"member {raw!r}: absolute path")
    if name and _climbs(name):
        raise ImageRejected(f"member {raw!r}: path climbs out of the image with '..'")
    parts = name.split("/") if name else []
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if parent in symlinks:
            raise ImageRejected(
                f"member {raw!r}: would be written through the symbolic link {parent!r}"
            )
    if (member.ischr() or member.isblk() or member.isfifo()) and not in_dev(name):
        kind = "device node" if not member.isfifo() else "FIFO"
        raise ImageRejected(f"member {raw!r}: {kind} outside dev/")
    if member.islnk():
        target = _clean(member.linkname)
        if member.linkname.startswith("/") or _climbs(target) or target not in seen:
            raise ImageRejected(
                f"member {raw!r}: hard link to {member.linkname!r}, which is not a member "
                "of the image"
            )
    if member.issym():
        target = member.linkname
        if not target.startswith("/"):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if _climbs(resolved):
                raise ImageRejected(
                    f"member {raw!r}: symbolic link to {target!r} points above the image root"
                )
        symlinks.add(name)
    elif name in symlinks:
        symlinks.discard(name)  # replaced by a real file or directory
    known = (member.isfile(), member.isdir(), member.issym(), member.islnk())
    if not any(known) and not (member.ischr() or member.isblk() or member.isfifo()):
        raise ImageRejected(f"member {raw!r}: unsupported member type {member.type!r}")
    seen.add(name)


def check_tar(path: Path, *, name: str | None = None, max_bytes: int | None = None) -> TarReport:
    """Read the whole image and check every member; raise ImageRejected on the first
    unsafe one. ``name`` gives the format when the file's own name does not (an
    upload in a temporary file)."""
    label = name or path.name
    symlinks: set[str] = set()
    seen: set[str] = set()
    count = total = skipped = 0
    try:
        with tar_stream(path, name) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                check_member(member, symlinks, seen)
                count += 1
                total += member.size
                skipped += in_dev(member.name)
                if max_bytes is not None and total > max_bytes:
                    raise ImageRejected(f"{path.name}: unpacks to more than {max_bytes} bytes")
    except tarfile.TarError as exc:
        raise ImageRejected(f"{label}: not a readable tar archive ({exc})") from None
    if count == 0:
        raise ImageRejected(f"{label}: the archive is empty")
    return TarReport(members=count, bytes=total, skipped_dev=skipped)
