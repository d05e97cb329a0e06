"""``qvd-vma-slave``: the desktop's end of one client→VM slave connection.

nxagent runs this program (``NX_SLAVE_CMD``) as the session's user for every slave
connection the client opens, with the channel on stdin and stdout (lab-nx-channels §5).
It reads one request head (``qvd.vma.slaveproto``), checks it against the session's slave
key (the file ``QVD_SLAVE_KEY_FILE``, 0600, the user's), and then:

- a share (``PUT /shares/<name>``): makes ``~/Redirected/<name>`` (never through a link:
  ``qvd.vma.homefiles``), answers 101 and runs ``sshfs -f -o passive`` on the same
  stdin/stdout (the client runs ``sftp-server`` on its end), waits for it and
  unmounts: the mount lives exactly as long as the channel (sshfs alone leaves a dead
  mount behind). A stale mount of the same name (its channel died) is
  unmounted first; a live one is a 409. No ``/dev/fuse`` → 503 with the reason.
- throughput (``POST /throughput``, for bench/): the raw channel's speed; bytes sent
  or counted, nothing stored.
- USB/IP (``POST /usbip``): 503 with the reason when the vhci-hcd module is not loaded
  (``/sys/devices/platform/vhci_hcd.0``); otherwise the channel goes to the VMA's attach
  service, which gives it to vhci-hcd (``qvd.vma.usbslave``, ``qvd.vma.usb``).

Every refusal is an HTTP response with the reason in the body, also written to stderr
(nxagent's log). Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from qvd.vma.homefiles import HomeError, ensure_private_dir, open_home
from qvd.vma.slaveproto import (
    SFTP_PROTOCOL,
    THROUGHPUT_PROTOCOL,
    HeadReader,
    ShareRequest,
    SlaveRefusal,
    ThroughputRequest,
    decide,
    parse_head,
    refusal_response,
    switching_response,
)
from qvd.vma.usbslave import serve_usb

__all__ = [
    "SHARES_DIR",
    "VHCI_DIR",
    "fuse_ready",
    "main",
    "mount_point",
    "read_head",
    "sshfs_argv",
    "unmount",
    "write_all",
]

SHARES_DIR = "Redirected"
VHCI_DIR = Path("/sys/devices/platform/vhci_hcd.0")
HEAD_TIMEOUT = 30.0  # seconds for the whole request head
_UTF8 = frozenset({"utf-8", "utf8"})


def _say(message: str) -> None:
    print(f"qvd-vma-slave: {message}", file=sys.stderr, flush=True)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_key(path: str | None) -> str:
    """The session's slave key ('' when there is none: every request is then refused)."""
    if not path:
        _say("QVD_SLAVE_KEY_FILE is not set: refusing every request")
        return ""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        _say(f"cannot read the slave key: {exc}")
        return ""


def read_head(fd: int, timeout: float) -> tuple[bytes, bytes]:
    reader = HeadReader()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise SlaveRefusal(400, "the request head did not come in time")
        done = reader.feed(os.read(fd, 4096))
        if done is not None:
            return done


def _is_stale(error: OSError) -> bool:
    return error.errno in (errno.ENOTCONN, errno.ECONNABORTED)


def unmount(path: str) -> None:
    """Unmount ``path`` lazily (a program holding a file open does not keep it)."""
    subprocess.run(
        ["fusermount3", "-u", "-z", "--", path],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        check=False, timeout=10,
    )  # fmt: skip


def mount_point(home: str, name: str, uid: int, gid: int) -> str:
    """``<home>/Redirected/<name>``, made as real directories of uid:gid (a link planted
    in their place is removed, never followed); a stale mount there is unmounted; a
    live one is refused (409)."""
    path = os.path.join(home, SHARES_DIR, name)
    with open_home(home) as home_fd:
        ensure_private_dir(home_fd, SHARES_DIR, uid, gid, 0o700)
        fd = os.open(SHARES_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=home_fd)
        try:
            for attempt in range(2):
                try:
                    ensure_private_dir(fd, name, uid, gid, 0o700)
                    break
                except OSError as exc:
                    if not _is_stale(exc) or attempt:
                        raise
                    unmount(path)  # its channel is gone: the mount is dead
            if os.path.ismount(path):
                raise SlaveRefusal(409, f"a share named {name!r} is already mounted")
        finally:
            os.close(fd)
    return path


def sshfs_argv(mount: str) -> list[str]:
    """sshfs over stdin/stdout (``passive``), in the foreground (it *is* the channel's
    process); ``idmap=user`` shows the shared folder's owner as the session's user."""
    return [
        "sshfs", "-f", "-o", "passive,idmap=user,dcache_timeout=2", "qvd-client:",
        mount,
    ]  # fmt: skip


def fuse_ready(unavailable: str) -> None:
    """SlaveRefusal 503 (``unavailable``: the reason's start) without sshfs or a
    usable ``/dev/fuse``."""
    if shutil.which("sshfs") is None:
        raise SlaveRefusal(503, f"{unavailable}: no sshfs")
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        raise SlaveRefusal(503, f"{unavailable}: /dev/fuse: {exc.strerror}") from None


def _share(request: ShareRequest, trailing: bytes) -> int:
    if request.charset is not None and request.charset.lower() not in _UTF8:
        raise SlaveRefusal(501, "shared folders support UTF-8 file names only")
    if trailing:
        raise SlaveRefusal(400, "bytes came after the request head before the 101")
    fuse_ready("shared folders are not available in this desktop")
    user = pwd.getpwuid(os.getuid())
    try:
        mount = mount_point(user.pw_dir, request.name, user.pw_uid, user.pw_gid)
    except HomeError as exc:
        raise SlaveRefusal(500, f"cannot make the share's directory: {exc.strerror}") from None
    except OSError as exc:
        raise SlaveRefusal(500, f"cannot make the share's directory: {exc.strerror}") from None
    write_all(1, switching_response(SFTP_PROTOCOL, mount))
    _say(f"mounting the client's share {request.name!r} on {mount}")
    try:
        done = subprocess.run(sshfs_argv(mount), check=False)  # the channel: stdin/stdout
    finally:
        unmount(mount)
    _say(f"share {request.name!r} ended (sshfs exit status {done.returncode})")
    return 0


def _throughput(request: ThroughputRequest, trailing: bytes) -> int:
    if len(trailing) > request.receive:
        raise SlaveRefusal(400, "more bytes came than X-QVD-Receive said")
    write_all(1, switching_response(THROUGHPUT_PROTOCOL))
    block = os.urandom(1 << 16)  # incompressible: the channel's own speed
    left = request.send
    while left:
        chunk = block[: min(left, len(block))]
        write_all(1, chunk)
        left -= len(chunk)
    count = len(trailing)
    while count < request.receive and (chunk := os.read(0, min(1 << 16, request.receive - count))):
        count += len(chunk)
    if request.receive:
        write_all(1, f"{count}\n".encode())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    del argv  # no options: everything comes over the channel
    key = _read_key(os.environ.get("QVD_SLAVE_KEY_FILE"))
    try:
        head, trailing = read_head(0, HEAD_TIMEOUT)
        request = decide(parse_head(head), key)
        if isinstance(request, ShareRequest):
            return _share(request, trailing)
        if isinstance(request, ThroughputRequest):
            return _throughput(request, trailing)
        return serve_usb(request, trailing, os.environ.get("QVD_SLAVE_KEY_FILE"), VHCI_DIR)
    except SlaveRefusal as refusal:
        _say(f"refused ({refusal.status}): {refusal.reason}")
        with contextlib.suppress(OSError):
            write_all(1, refusal_response(refusal))
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
