"""The home drive: what a device holds (read from its bytes), and on real loop devices
(root): a blank one is formatted and mounted nosuid,nodev, one with files is mounted
and never formatted, one with any other signature is refused and left as it was."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.config import load_vma_config
from qvd.vma.homedrive import (
    HOME_LABEL,
    DriveContent,
    HomeDrive,
    HomeDriveError,
    is_mount_point,
    mount_home_drive,
    probe_drive,
)
from qvd.vma.main import home_preparer

MIB = 1024 * 1024


def image(path: Path, size: int = 64 * MIB, writes: dict[int, bytes] | None = None) -> Path:
    with open(path, "wb") as out:
        out.truncate(size)
        for offset, data in (writes or {}).items():
            out.seek(offset)
            out.write(data)
    return path


def test_probe_zeros_ext_and_foreign(tmp_path: Path) -> None:
    assert probe_drive(image(tmp_path / "blank")) is DriveContent.BLANK
    ext = {1024 + 56: b"\x53\xef"}
    assert probe_drive(image(tmp_path / "ext", writes=ext)) is DriveContent.EXT
    for name, writes in {
        "xfs": {0: b"XFSB"},
        "mbr": {510: b"\x55\xaa"},
        "gpt": {512: b"EFI PART"},
        "mbr-over-ext": {510: b"\x55\xaa", 1024 + 56: b"\x53\xef"},
        "luks": {0: b"LUKS\xba\xbe"},
        "btrfs": {0x10040: b"_BHRfS_M"},
        "md-at-end": {64 * MIB - 8192: b"\xfc\x4e\x2b\xa9"},
    }.items():
        assert probe_drive(image(tmp_path / name, writes=writes)) is DriveContent.FOREIGN, name


def test_settings_choose_the_drive() -> None:
    common = {"fs": "ext4", "mount_point": "/home", "wait": 5.0}
    by_serial = HomeDrive.from_settings(drive="", home_serial="qvd-home", **common)  # type: ignore[arg-type]
    assert by_serial is not None
    assert by_serial.device == Path("/dev/disk/by-id/virtio-qvd-home")
    assert HomeDrive.from_settings(drive="", home_serial=None, **common) is None  # type: ignore[arg-type]
    explicit = HomeDrive.from_settings(drive="/dev/vdb", home_serial="qvd-home", **common)  # type: ignore[arg-type]
    assert explicit is not None
    assert explicit.device == Path("/dev/vdb")
    for bad in ({"drive": "/etc/passwd"}, {"drive": "/dev/../etc/x"}, {"fs": "xfs"},
                {"mount_point": "home"}, {"home_serial": "a/b"}):  # fmt: skip
        values: dict[str, object] = {"drive": "", "home_serial": "qvd-home", **common, **bad}
        with pytest.raises(HomeDriveError):
            HomeDrive.from_settings(**values)  # type: ignore[arg-type]


def test_a_bad_setting_makes_provisioning_fail_with_the_reason(tmp_path: Path) -> None:
    config = load_vma_config(tmp_path / "none", {"vma.user.home.drive": "/srv/disk"})
    prepare = home_preparer(config, None)
    assert prepare is not None
    with pytest.raises(HomeDriveError, match="is not a path under /dev"):
        prepare()
    assert home_preparer(load_vma_config(tmp_path / "none"), None) is None


def test_a_device_that_never_appears_fails_after_the_bounded_wait(tmp_path: Path) -> None:
    drive = HomeDrive(device=tmp_path / "absent", fs="ext4", mount_point=tmp_path / "h", wait=0.3)
    with pytest.raises(HomeDriveError, match=r"did not appear within 0\.3 s"):
        mount_home_drive(drive)


# ---- real loop devices ---------------------------------------------------------------


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a loop device over a 64 MiB file, a mount point); both undone at the end."""
    if os.geteuid() != 0:
        pytest.fail("loop devices need root")
    backing = image(tmp_path / "home.img")
    device = Path(
        subprocess.run(
            ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
            check=True,
        ).stdout.strip()
    )  # fmt: skip
    point = tmp_path / "home"
    try:
        yield device, point
    finally:
        if point.exists() and is_mount_point(point):
            subprocess.run(["umount", str(point)], check=False)
        subprocess.run(["losetup", "-d", str(device)], check=False)


def _mount_options(point: Path) -> set[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(point.resolve()):
            return set(fields[5].split(","))
    return set()


def _digest(device: Path) -> str:
    with open(device, "rb") as disk:
        return hashlib.sha256(disk.read()).hexdigest()


def test_a_blank_drive_is_formatted_and_mounted_once(loop: tuple[Path, Path]) -> None:
    device, point = loop
    drive = HomeDrive(device=device, fs="ext4", mount_point=point, wait=1.0)
    assert mount_home_drive(drive) == "formatted and mounted"
    assert {"nosuid", "nodev"} <= _mount_options(point)
    label = subprocess.run(["blkid", "-s", "LABEL", "-o", "value", str(device)],
                           capture_output=True, text=True, check=False).stdout  # fmt: skip
    assert label.strip() == HOME_LABEL
    (point / "alice").mkdir()
    assert mount_home_drive(drive) == "already mounted"
    assert (point / "alice").is_dir()


def test_a_drive_with_files_is_mounted_never_formatted(
    loop: tuple[Path, Path], tmp_path: Path
) -> None:
    device, point = loop
    subprocess.run(["mkfs.ext4", "-q", "-L", "olddata", str(device)], check=True)
    first = tmp_path / "first"
    first.mkdir()
    subprocess.run(["mount", str(device), str(first)], check=True)
    (first / "alice").mkdir()
    (first / "alice/notes.txt").write_text("kept\n")
    subprocess.run(["umount", str(first)], check=True)
    late = tmp_path / "by-id-link"  # udev creates the link a moment later
    timer = threading.Timer(0.3, lambda: late.symlink_to(device))
    timer.start()
    try:
        drive = HomeDrive(device=late, fs="ext4", mount_point=point, wait=10.0)
        assert mount_home_drive(drive) == "mounted"
    finally:
        timer.cancel()
    assert (point / "alice/notes.txt").read_text() == "kept\n"
    label = subprocess.run(["blkid", "-s", "LABEL", "-o", "value", str(device)],
                           capture_output=True, text=True, check=False).stdout  # fmt: skip
    assert label.strip() == "olddata"
    assert {"nosuid", "nodev"} <= _mount_options(point)


@pytest.mark.parametrize(
    "signature", [{0: b"XFSB"}, {510: b"\x55\xaa"}, {4 * MIB: b"x", 0: b"\x01"}]
)
def test_a_drive_with_an_unknown_signature_is_refused_untouched(
    loop: tuple[Path, Path], signature: dict[int, bytes]
) -> None:
    device, point = loop
    with open(device, "r+b") as disk:
        for offset, data in signature.items():
            disk.seek(offset)
            disk.write(data)
    before = _digest(device)
    drive = HomeDrive(device=device, fs="ext4", mount_point=point, wait=1.0)
    with pytest.raises(HomeDriveError, match="left untouched"):
        mount_home_drive(drive)
    assert _digest(device) == before
    assert not (point.exists() and is_mount_point(point))
