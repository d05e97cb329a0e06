"""The persistent home drive of a virtual machine: formatted on first use, then mounted.

A KVM guest with a persistent home gets a second virtio disk (serial ``qvd-home``,
seen as ``/dev/disk/by-id/virtio-qvd-home``), empty the first time. Before the first
user is provisioned the VMA waits for the device (udev may create the link late),
makes an ext4 file system on it (label ``qvdhome``) if it is blank, and mounts it on
``vma.user.home.path`` with ``nosuid,nodev``. Settings (QVD's names):
``vma.user.home.drive`` (a device path; empty: the fw_cfg identity's home serial
decides), ``vma.user.home.fs`` (ext4, ext3 or ext2) and ``vma.user.home.drive.wait``
(seconds to wait for the device).

Never formatting a user's data is the rule: a device is formatted only when its first
and last MiB are all zero bytes (a fresh disk image reads so). A device that carries an
ext file system is mounted as it is; anything else (another file system, a partition
table, LVM, encrypted data, …) is refused and left untouched. ``mke2fs`` runs without
``-F`` and with no input, so it also stops at any signature it recognises itself.
"""

from __future__ import annotations

import enum
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BY_ID",
    "HOME_LABEL",
    "SUPPORTED_FS",
    "DriveContent",
    "HomeDrive",
    "HomeDriveError",
    "is_mount_point",
    "mount_home_drive",
    "probe_drive",
]

BY_ID = Path("/dev/disk/by-id")
HOME_LABEL = "qvdhome"
SUPPORTED_FS = ("ext4", "ext3", "ext2")
_PROBE_BYTES = 1024 * 1024
_EXT_MAGIC_OFFSET = 1024 + 56  # s_magic in the ext superblock
_EXT_MAGIC = b"\x53\xef"
_SERIAL = re.compile(r"[A-Za-z0-9_-]{1,20}")


class HomeDriveError(Exception):
    """The home drive cannot be used (missing, foreign content, mkfs or mount failed)."""


class DriveContent(enum.Enum):
    BLANK = "blank"  # all zero where any signature would be: safe to format
    EXT = "ext"  # an ext2/3/4 file system: mount it
    FOREIGN = "foreign"  # anything else: never touched


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeDrive:
    """Where the home drive is, how to format it and where it goes."""

    device: Path
    fs: str
    mount_point: Path
    wait: float

    @classmethod
    def from_settings(
        cls,
        *,
        drive: str,
        home_serial: str | None,
        fs: str,
        mount_point: str,
        wait: float,
    ) -> HomeDrive | None:
        """The drive configured (``drive``) or named by the identity (``home_serial``);
        None when there is none. Raises :class:`HomeDriveError` on a bad setting."""
        if fs not in SUPPORTED_FS:
            raise HomeDriveError(f"vma.user.home.fs {fs!r} is not one of {SUPPORTED_FS}")
        if not mount_point.startswith("/") or ".." in mount_point.split("/"):
            raise HomeDriveError(f"vma.user.home.path {mount_point!r} is not an absolute path")
        if drive:
            if not drive.startswith("/dev/") or ".." in drive.split("/"):
                raise HomeDriveError(f"vma.user.home.drive {drive!r} is not a path under /dev")
            device = Path(drive)
        elif home_serial is not None:
            if not _SERIAL.fullmatch(home_serial):
                raise HomeDriveError(f"home serial {home_serial!r} is not a disk serial")
            device = BY_ID / f"virtio-{home_serial}"
        else:
            return None
        return cls(device=device, fs=fs, mount_point=Path(mount_point), wait=max(wait, 0.0))


def probe_drive(device: Path) -> DriveContent:
    """What ``device`` holds, read from its first and last MiB."""
    try:
        with open(device, "rb", buffering=0) as disk:
            head = disk.read(_PROBE_BYTES)
            size = disk.seek(0, os.SEEK_END)
            tail = b""
            if size > _PROBE_BYTES:
                disk.seek(max(size - _PROBE_BYTES, _PROBE_BYTES))
                tail = disk.read(_PROBE_BYTES)
    except OSError as exc:
        raise HomeDriveError(f"cannot read {device}: {exc.strerror}") from None
    if len(head) > _EXT_MAGIC_OFFSET + 2:
        magic = head[_EXT_MAGIC_OFFSET : _EXT_MAGIC_OFFSET + 2]
        if magic == _EXT_MAGIC and not _has_partition_table(head):
            return DriveContent.EXT
    if head.count(0) == len(head) and tail.count(0) == len(tail):
        return DriveContent.BLANK
    return DriveContent.FOREIGN


def _has_partition_table(head: bytes) -> bool:
    """An MBR boot signature or a GPT header (an ext superblock on a whole disk has
    neither: its first KiB is zero)."""
    return head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART"


def _mount_points() -> set[str]:
    found: set[str] = set()
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            if len(fields) > 4:
                found.add(fields[4].replace("\\040", " "))
    return found


def is_mount_point(path: Path) -> bool:
    return str(path.resolve()) in _mount_points()


Run = Callable[[list[str]], subprocess.CompletedProcess[str]]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _checked(run: Run, argv: list[str]) -> None:
    done = run(argv)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-300:]
        raise HomeDriveError(f"{argv[0]} failed ({done.returncode}): {detail}")


def _wait_for(device: Path, seconds: float, sleep: Callable[[float], None]) -> None:
    end = time.monotonic() + seconds
    while not device.exists():
        if time.monotonic() >= end:
            raise HomeDriveError(f"home drive {device} did not appear within {seconds:g} s")
        sleep(0.1)


def mount_home_drive(
    drive: HomeDrive,
    *,
    run: Run = _run,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Make ``drive`` the mounted home; returns what was done ("mounted",
    "formatted and mounted", "already mounted"). Idempotent."""
    if is_mount_point(drive.mount_point):
        return "already mounted"
    _wait_for(drive.device, drive.wait, sleep)
    device = drive.device.resolve()
    if not device.exists() or not device.is_block_device():
        raise HomeDriveError(f"home drive {drive.device} is not a block device")
    content = probe_drive(device)
    action = "mounted"
    if content is DriveContent.FOREIGN:
        raise HomeDriveError(
            f"home drive {drive.device} holds something that is not an ext file system; "
            "it is left untouched"
        )
    if content is DriveContent.BLANK:
        _checked(run, [f"mkfs.{drive.fs}", "-q", "-L", HOME_LABEL, "--", str(device)])
        action = "formatted and mounted"
    drive.mount_point.mkdir(mode=0o755, parents=True, exist_ok=True)
    _checked(
        run,
        ["mount", "-t", drive.fs, "-o", "nosuid,nodev", "--", str(device), str(drive.mount_point)],
    )
    return action
