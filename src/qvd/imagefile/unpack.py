"""Unpacking an image in one pass, checked while it unpacks.

The plain tar stream is read once, by Python's ``tarfile`` (the checker), through a
:class:`_Gate` that hands each member's bytes on to GNU tar (numeric owners, extended
attributes) only once that member passed :class:`~qvd.imagefile.tarcheck.MemberChecker`:
GNU tar never sees a header that was not checked. Device nodes under ``dev/`` are cut
out of the stream (GNU tar never sees them either). The checker counts bytes and
members from the headers, so a tar bomb is stopped at the first member over the
:class:`~qvd.imagefile.tarcheck.Limits`, before that member's data is written.

After GNU tar is done, the tree is walked once more: a name the checker did not pass,
or any device node, FIFO or socket, refuses the image (a belt against the two parsers
ever reading a header differently). On any refusal or failure the destination is
emptied again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import IO, cast

from qvd.imagefile.tarcheck import (
    NO_LIMITS,
    ImageRejected,
    Limits,
    MemberChecker,
    TarReport,
    Verdict,
    tar_stream,
)

__all__ = ["unpack_checked"]

_GNU_TAR = (
    *("tar", "-x", "--numeric-owner", "--same-permissions", "--same-owner"),
    *("--xattrs", "--xattrs-include=*", "-f", "-"),
)


class _Gate:
    """A read-only file object over ``source`` for ``tarfile``; what it read is held
    until :meth:`allow` lets it through to ``sink`` (GNU tar's stdin) or :meth:`cut`
    drops it."""

    def __init__(self, source: IO[bytes], sink: IO[bytes]) -> None:
        self.source = source
        self.sink = sink
        self.held = bytearray()
        self.held_start = 0  # stream offset of held[0]
        self.allowed = 0  # bytes below this offset go through
        self.cut_until = 0  # bytes below this offset (and >= held_start) are dropped

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.held += data
        self._flush()
        return data

    def allow(self, upto: int) -> None:
        self.allowed = max(self.allowed, upto)
        self._flush()

    def cut(self, start: int, end: int) -> None:
        """Drop stream bytes ``[start, end)`` (none of them went through yet)."""
        self.allow(start)
        if self.held_start != start:
            raise ImageRejected(f"internal: cannot cut at {start} (at {self.held_start})")
        self.cut_until = end
        self.allowed = end
        self._flush()

    def release_all(self) -> None:
        self.allow(self.held_start + len(self.held))

    def _flush(self) -> None:
        if self.cut_until > self.held_start:
            n = min(self.cut_until - self.held_start, len(self.held))
            del self.held[:n]
            self.held_start += n
        n = min(self.allowed - self.held_start, len(self.held))
        if n > 0:
            self.sink.write(bytes(self.held[:n]))
            del self.held[:n]
            self.held_start += n


def _empty(dest: Path) -> None:
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _check_stream(stream: IO[bytes], gate: _Gate, checker: MemberChecker, label: str) -> None:
    try:
        with tarfile.open(fileobj=cast("IO[bytes]", gate), mode="r|") as tar:
            start = 0
            for member in tar:
                global_before = dict(tar.pax_headers)
                verdict = checker.check(member)
                if verdict is Verdict.DROP:
                    if global_before != tar.pax_headers or member.offset != start:
                        raise ImageRejected(f"member {member.name!r}: headers before it in dev/")
                    gate.cut(member.offset, tar.offset)
                else:
                    gate.allow(tar.offset)
                start = tar.offset
    except tarfile.TarError as exc:
        raise ImageRejected(f"{label}: not a readable tar archive ({exc})") from None
    if checker.members == 0:
        raise ImageRejected(f"{label}: the archive is empty")
    gate.release_all()


def _verify_tree(dest: Path, checker: MemberChecker, label: str) -> None:
    """Every path on disk is a member the checker passed (or a parent of one), and
    none is a device node, FIFO or socket."""
    passed = checker.directories | checker.regular | checker.symlinks
    parents = {p for name in passed for p in _parents(name)}
    for folder, dirs, files in os.walk(dest):
        for entry in (*dirs, *files):
            path = os.path.join(folder, entry)
            rel = os.path.relpath(path, dest)
            mode = os.lstat(path).st_mode
            if (
                stat.S_ISCHR(mode)
                or stat.S_ISBLK(mode)
                or stat.S_ISFIFO(mode)
                or stat.S_ISSOCK(mode)
            ):
                raise ImageRejected(f"{label}: {rel!r} unpacked as a special file")
            if rel not in passed and rel not in parents:
                raise ImageRejected(f"{label}: {rel!r} unpacked but was never checked")


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def unpack_checked(image: Path, dest: Path, *, limits: Limits = NO_LIMITS) -> TarReport:
    """Unpack ``image`` into ``dest`` (which must exist and be empty), checking every
    member as it streams. Raises ImageRejected, with ``dest`` emptied again, if a
    member is unsafe, the limits are passed or GNU tar fails."""
    checker = MemberChecker(limits)
    label = image.name
    with tempfile.TemporaryFile() as errors:
        tar = subprocess.Popen([*_GNU_TAR, "-C", str(dest)], stdin=subprocess.PIPE, stderr=errors)
        assert tar.stdin is not None
        try:
            try:
                with tar_stream(image) as stream:
                    _check_stream(stream, _Gate(stream, tar.stdin), checker, label)
                tar.stdin.close()
            except BrokenPipeError:
                pass  # GNU tar stopped: its exit status and message tell why
            except BaseException:
                tar.kill()
                raise
            finally:
                if not tar.stdin.closed:
                    with contextlib.suppress(BrokenPipeError):
                        tar.stdin.close()
                tar.wait()
            if tar.returncode != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace").strip()
                raise ImageRejected(f"{label}: unpacking failed: {message}")
            _verify_tree(dest, checker, label)
        except BaseException:
            _empty(dest)
            raise
    return checker.report()
