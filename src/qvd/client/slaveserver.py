"""The client's slave server: a desktop folder opened on the client machine.

nxproxy runs this program (its ``NX_SLAVE_CMD``, set by ``DesktopSharesDevice``) for
every VM→client slave connection, with the channel on stdin and stdout (lab-nx-channels
§5). The desktop is hostile: it reads one request head (``qvd.vma.slaveproto``, the
same parser and name rules as the desktop's own slave server) and accepts only
``GET /shares/<name>`` with ``Upgrade: qvd:sftp/1.0`` and the session's slave key
(``QVD_SLAVE_KEY`` in the environment, never the argv). Refusals, each with the reason
in the body: 401 (key), 400 (request, name), 403 (the user did not allow desktop
folders: ``client.share.from_desktop.enable``), 409 (that name is mounted already),
503 (no sshfs or /dev/fuse, or too many folders open).

On success it makes ``<base>/<name>`` (``QVD_SHARE_FROM_DESKTOP_PATH``, default
``~/QVD``; made 0700, a link planted in its place is removed, never followed), answers
101 and runs ``sshfs -f -o passive`` on the same stdin/stdout (the desktop runs
``sftp-server`` on its end); when the channel ends it unmounts and removes the empty
directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from qvd.vma.homefiles import HomeError, ensure_private_dir
from qvd.vma.shares import fuse_mounts_below
from qvd.vma.slave import fuse_ready, read_head, unmount, write_all
from qvd.vma.slaveproto import (
    SFTP_PROTOCOL,
    SlaveRefusal,
    decide_from_desktop,
    parse_head,
    refusal_response,
    switching_response,
)

__all__ = [
    "DEFAULT_BASE",
    "ENV_BASE",
    "ENV_ENABLED",
    "ENV_KEY",
    "ENV_MAX_OPEN",
    "ENV_SLOTS",
    "MAX_CONNECTIONS",
    "MAX_OPEN",
    "base_dir",
    "main",
    "sshfs_argv",
    "unmount",
]

ENV_KEY = "QVD_SLAVE_KEY"
ENV_ENABLED = "QVD_SHARE_FROM_DESKTOP"
ENV_BASE = "QVD_SHARE_FROM_DESKTOP_PATH"
DEFAULT_BASE = "~/QVD"
ENV_MAX_OPEN = "QVD_SHARE_FROM_DESKTOP_MAX"  # the client's own bound (tests lower it)
MAX_OPEN = 16  # desktop folders mounted at once
ENV_SLOTS = "QVD_SLAVE_SLOTS_DIR"  # the session's private folder of connection slots
MAX_CONNECTIONS = 32  # slave connections served at once (a mount holds one for its life)
HEAD_TIMEOUT = 30.0
_UTF8 = frozenset({"utf-8", "utf8"})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _say(message: str) -> None:
    print(f"qvd-client slave server: {message}", file=sys.stderr, flush=True)


def base_dir(configured: str | None) -> str:
    """The folder desktop folders are mounted below (absolute, normalised)."""
    path = os.path.normpath(os.path.expanduser(configured or DEFAULT_BASE))
    if not os.path.isabs(path):
        raise ValueError(f"{configured!r} is not an absolute folder")
    return path


def sshfs_argv(mount: str) -> list[str]:
    """sshfs over stdin/stdout (``passive``) in the foreground: the channel's process.
    ``nosuid,nodev`` said explicitly: a set-uid file or a device node the desktop serves
    stays inert on the client whoever mounts (fusermount3 adds them too, here)."""
    return [
        "sshfs", "-f", "-o", "passive,idmap=user,dcache_timeout=2,nosuid,nodev",
        "qvd-desktop:", mount,
    ]  # fmt: skip


def _mounts(base: str) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        return fuse_mounts_below(fh.read(), base)


def _mount_point(base: str, name: str) -> str:
    """``<base>/<name>`` as real directories of this user (never through a link)."""
    uid, gid = os.getuid(), os.getgid()
    os.makedirs(base, 0o700, exist_ok=True)
    base_fd = os.open(base, _DIR_FLAGS)  # a link in the base's place: ELOOP, refused
    try:
        if os.fstat(base_fd).st_uid != uid:
            raise SlaveRefusal(500, f"{base} is not this user's folder")
        path = os.path.join(base, name)
        if path in _mounts(base):
            raise SlaveRefusal(409, f"a desktop folder named {name!r} is already open")
        ensure_private_dir(base_fd, name, uid, gid, 0o700)
    finally:
        os.close(base_fd)
    return path


def _max_open() -> int:
    value = os.environ.get(ENV_MAX_OPEN, "")
    return min(int(value), MAX_OPEN) if value.isdigit() else MAX_OPEN


def _serve(trailing: bytes, charset: str | None, name: str, base: str) -> int:
    if charset is not None and charset.lower() not in _UTF8:
        raise SlaveRefusal(501, "desktop folders support UTF-8 file names only")
    if trailing:
        raise SlaveRefusal(400, "bytes came after the request head before the 101")
    fuse_ready("desktop folders cannot be opened on this client")
    if len(_mounts(base)) >= (limit := _max_open()):
        raise SlaveRefusal(503, f"{limit} desktop folders are open already")
    try:
        mount = _mount_point(base, name)
    except (HomeError, OSError) as exc:
        raise SlaveRefusal(500, f"cannot make the folder's mount point: {exc}") from None
    write_all(1, switching_response(SFTP_PROTOCOL, name))
    _say(f"opening the desktop's folder {name!r} on {mount}")
    try:
        env = {k: v for k, v in os.environ.items() if k != ENV_KEY}  # sshfs needs no key
        done = subprocess.run(sshfs_argv(mount), env=env, check=False)  # stdin/stdout: channel
    finally:
        unmount(mount)
        with contextlib.suppress(OSError):
            os.rmdir(mount)  # only when empty: never a file of the user's
    _say(f"desktop folder {name!r} closed (sshfs exit status {done.returncode})")
    return 0


def _take_slot(directory: str) -> int | None:
    """A held lock on one of ``MAX_CONNECTIONS`` slot files (released when this process
    ends), or None when every slot is taken: a desktop opening connections in a loop
    gets refused at once instead of piling up servers waiting for their heads."""
    for index in range(MAX_CONNECTIONS):
        fd = os.open(os.path.join(directory, f"slot-{index}"),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd
    return None


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # the share's finally unmounts and removes its folder


def main(argv: Sequence[str] | None = None) -> int:
    del argv  # everything comes from the environment and the channel
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)  # the client's session ends: clean up
    key = os.environ.get(ENV_KEY, "")
    enabled = os.environ.get(ENV_ENABLED, "0") == "1"
    slots = os.environ.get(ENV_SLOTS)
    try:
        if slots and _take_slot(slots) is None:
            raise SlaveRefusal(503, f"{MAX_CONNECTIONS} slave connections are open already")
        head, trailing = read_head(0, HEAD_TIMEOUT)
        request = decide_from_desktop(parse_head(head), key)
        if not enabled:
            raise SlaveRefusal(
                403, "this client does not open desktop folders "
                "(client.share.from_desktop.enable is off)",
            )  # fmt: skip
        try:
            base = base_dir(os.environ.get(ENV_BASE))
        except ValueError as exc:
            raise SlaveRefusal(500, str(exc)) from None
        return _serve(trailing, request.charset, request.name, base)
    except SlaveRefusal as refusal:
        _say(f"refused ({refusal.status}): {refusal.reason}")
        with contextlib.suppress(OSError):
            write_all(1, refusal_response(refusal))
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
