"""The home drive named to the VMA holds something that is not a blank disk or an ext
file system (another file system, a partition table, RAID or encrypted data: a wrong disk
attached, or a user's data in a format the VMA does not know). Formatting it "because
it has no ext file system" would destroy it. The VMA's home step (as provisioning runs
it) refuses it and leaves every byte as it was; a blank disk is formatted."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.config import load_vma_config
from qvd.vma.homedrive import HomeDriveError, is_mount_point
from qvd.vma.main import home_preparer

SIGNATURES = {
    "xfs": {0: b"XFSB\x00\x00\x10\x00"},
    "mbr-partition-table": {446: b"\x80\x00\x01\x00\x83", 510: b"\x55\xaa"},
    "luks": {0: b"LUKS\xba\xbe\x00\x02"},
    "btrfs": {0x10040: b"_BHRfS_M"},
    "md-raid-superblock-at-the-end": {32 * 1024 * 1024 - 8192: b"\xfc\x4e\x2b\xa9"},
}


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if os.geteuid() != 0:
        pytest.fail("loop devices need root")
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as out:
        out.truncate(32 * 1024 * 1024)
    device = Path(
        subprocess.run(["losetup", "--find", "--show", str(backing)],
                       capture_output=True, text=True, check=True).stdout.strip()
    )  # fmt: skip
    point = tmp_path / "home"
    try:
        yield device, point
    finally:
        if point.exists() and is_mount_point(point):
            subprocess.run(["umount", str(point)], check=False)
        subprocess.run(["losetup", "-d", str(device)], check=False)


def digest(device: Path) -> str:
    with open(device, "rb") as disk:
        return hashlib.sha256(disk.read()).hexdigest()


@pytest.mark.parametrize("kind", sorted(SIGNATURES))
def test_a_foreign_home_drive_is_never_formatted(
    loop_device: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    device, point = loop_device
    with open(device, "r+b") as disk:
        for offset, data in SIGNATURES[kind].items():
            disk.seek(offset)
            disk.write(data)
    before = digest(device)
    config = load_vma_config(
        tmp_path / "none",
        {"vma.user.home.drive": str(device), "vma.user.home.path": str(point)},
    )
    prepare = home_preparer(config, None)
    assert prepare is not None
    with pytest.raises(HomeDriveError, match="left untouched"):
        prepare()
    assert digest(device) == before
    assert not is_mount_point(point) if point.exists() else True


def test_a_blank_home_drive_is_formatted(loop_device: tuple[Path, Path], tmp_path: Path) -> None:
    device, point = loop_device
    config = load_vma_config(
        tmp_path / "none",
        {"vma.user.home.drive": str(device), "vma.user.home.path": str(point)},
    )
    prepare = home_preparer(config, None)
    assert prepare is not None
    prepare()
    prepare()  # once only
    assert is_mount_point(point)
