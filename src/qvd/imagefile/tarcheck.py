"""Checking an LXC image tarball member by member, streaming (no file is written).

Every member name is normalised first (``./`` and repeated ``/`` collapsed, a trailing
``/`` dropped), and every rule below is applied to the normalised name, so ``a//b``,
``./a`` and ``a/`` are one path. Refused, with the member's name and the reason:
- names that are absolute or hold a ``..`` component at all;
- every device node and FIFO, anywhere, except under ``dev/`` (a real directory):
  those are dropped, never written (LXC gives every container a fresh ``/dev``);
  ``dev`` itself must be a directory;
- hard links whose target is not an earlier regular file of the image;
- symbolic links whose target, resolved lexically from the member's directory,
  climbs above the image root;
- members that would be written through a symbolic link (``x -> /etc`` then
  ``x/passwd``), or that replace an earlier symbolic link;
- sockets and other unknown member types;
- more bytes or more members than the :class:`Limits` allow (a tar bomb): counted from
  the headers as they stream, so a bomb stops before its data is read;
- an archive that is not a tar stream at all, or is truncated.
Absolute symbolic-link targets are normal in a root file system (they resolve inside
the container) and are accepted as long as nothing is written through them.
"""

from __future__ import annotations

import enum
import posixpath
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageRejected",
    "Limits",
    "MemberChecker",
    "TarReport",
    "Verdict",
    "check_tar",
    "decompressor_for",
    "normalise",
    "tar_stream",
]

IMAGE_SUFFIXES = (".tar.zst", ".tar.gz", ".tgz", ".tar.xz", ".tar")


class ImageRejected(Exception):
    """The image is unsafe or unreadable; ``str()`` says which member and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much an image may unpack to: bytes of member data and number of members."""

    max_bytes: int
    max_members: int


NO_LIMITS = Limits(max_bytes=1 << 62, max_members=1 << 62)


@dataclass(frozen=True, slots=True, kw_only=True)
class TarReport:
    members: int
    bytes: int
    skipped_dev: int


class Verdict(enum.Enum):
    """What to do with a member that passed the checks."""

    WRITE = "write"
    DROP = "drop"  # a device node under dev/: never written


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
        refused = False
        try:
            yield proc.stdout
        except ImageRejected:
            refused = True
            raise
        finally:
            proc.stdout.close()
            if refused:
                proc.kill()  # a refused bomb: do not let it decompress to the end
            _, err = proc.communicate()
            if not refused and proc.returncode not in (0, -13):  # -13: SIGPIPE
                raise ImageRejected(
                    f"{name or path.name}: cannot decompress "
                    f"({err.decode(errors='replace').strip()})"
                )


def normalise(name: str) -> str:
    """A member name with ``./`` and repeated or trailing ``/`` collapsed (``..`` is
    kept, for the caller to refuse); the root itself is ``""``."""
    if name.startswith("/"):
        return name  # refused as absolute by the caller
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _climbs(path: str) -> bool:
    return ".." in path.split("/")


def _is_device(member: tarfile.TarInfo) -> bool:
    return member.ischr() or member.isblk() or member.isfifo()


@dataclass(slots=True)
class MemberChecker:
    """The state of one archive's check: what was seen so far and the counters."""

    limits: Limits = NO_LIMITS
    members: int = 0
    bytes: int = 0
    dropped: int = 0
    symlinks: set[str] = field(default_factory=set)
    regular: set[str] = field(default_factory=set)
    directories: set[str] = field(default_factory=set)

    def check(self, member: tarfile.TarInfo) -> Verdict:
        """Raise ImageRejected if writing ``member`` would be unsafe or over the
        limits; else whether to write it or drop it."""
        raw = member.name
        name = normalise(raw)
        if name.startswith("/"):
            raise ImageRejected(f"member {raw!r}: absolute path")
        if _climbs(name):
            raise ImageRejected(f"member {raw!r}: path climbs out of the image with '..'")
        self.members += 1
        self.bytes += max(member.size, 0)
        if self.members > self.limits.max_members:
            raise ImageRejected(
                f"member {raw!r}: the image has more than {self.limits.max_members} members "
                "(di.unpack.max_members)"
            )
        if self.bytes > self.limits.max_bytes:
            raise ImageRejected(
                f"member {raw!r}: the image unpacks to more than {self.limits.max_bytes} bytes "
                "(di.unpack.max_bytes)"
            )
        parts = name.split("/") if name else []
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in self.symlinks:
                raise ImageRejected(
                    f"member {raw!r}: would be written through the symbolic link {parent!r}"
                )
        if name in self.symlinks:
            raise ImageRejected(f"member {raw!r}: replaces the symbolic link {name!r}")
        if name == "dev" and not member.isdir():
            raise ImageRejected(f"member {raw!r}: 'dev' must be a directory")
        if _is_device(member):
            kind = "FIFO" if member.isfifo() else "device node"
            if not (name.startswith("dev/") and "dev" in self.directories):
                raise ImageRejected(f"member {raw!r}: {kind} outside dev/")
            self.dropped += 1
            return Verdict.DROP
        if name.startswith("dev/") and member.islnk():
            raise ImageRejected(f"member {raw!r}: hard link under dev/")
        if member.islnk():
            target = normalise(member.linkname)
            if target.startswith("/") or _climbs(target) or target not in self.regular:
                raise ImageRejected(
                    f"member {raw!r}: hard link to {member.linkname!r}, which is not a "
                    "regular file of the image"
                )
            self.regular.add(name)
        elif member.issym():
            self._check_symlink(member, name)
            self.symlinks.add(name)
        elif member.isdir():
            self.directories.add(name)
        elif member.isfile():
            self.regular.add(name)
        else:
            raise ImageRejected(f"member {raw!r}: unsupported member type {member.type!r}")
        return Verdict.WRITE

    def _check_symlink(self, member: tarfile.TarInfo, name: str) -> None:
        target = member.linkname
        if "\x00" in target:
            raise ImageRejected(f"member {member.name!r}: symbolic link target holds a NUL")
        if target.startswith("/"):
            return
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if resolved == ".." or resolved.startswith("../"):
            raise ImageRejected(
                f"member {member.name!r}: symbolic link to {target!r} points above the image root"
            )

    def report(self) -> TarReport:
        return TarReport(members=self.members, bytes=self.bytes, skipped_dev=self.dropped)


def check_tar(path: Path, *, name: str | None = None, limits: Limits = NO_LIMITS) -> TarReport:
    """Read the whole image and check every member; raise ImageRejected on the first
    unsafe one. ``name`` gives the format when the file's own name does not (an
    upload in a temporary file)."""
    label = name or path.name
    checker = MemberChecker(limits)
    try:
        with tar_stream(path, name) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                checker.check(member)
    except tarfile.TarError as exc:
        raise ImageRejected(f"{label}: not a readable tar archive ({exc})") from None
    if checker.members == 0:
        raise ImageRejected(f"{label}: the archive is empty")
    return checker.report()
