"""Checking and unpacking image tarballs: good roots pass, malicious members are refused
before anything is written."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from qvd.imagefile import ImageRejected, check_tar, unpack_checked

Member = Callable[[tarfile.TarFile], None]


def file_member(name: str, data: bytes = b"x") -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    return add


def entry_member(
    name: str, kind: bytes, *, link: str = "", major: int = 0, minor: int = 0
) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        info.devmajor, info.devminor = major, minor
        if kind == tarfile.DIRTYPE:
            info.mode = 0o755
        tar.addfile(info)

    return add


def make_image(path: Path, *members: Member) -> Path:
    plain = path.with_name(path.name.removesuffix(".zst"))
    with tarfile.open(plain, "w", format=tarfile.GNU_FORMAT) as tar:
        for add in members:
            add(tar)
    if path.name.endswith(".zst"):
        subprocess.run(["zstd", "-q", "--rm", "-f", str(plain), "-o", str(path)], check=True)
    return path


GOOD = (
    entry_member("./", tarfile.DIRTYPE),
    entry_member("./etc", tarfile.DIRTYPE),
    file_member("./etc/hostname", b"vm\n"),
    entry_member("./etc/localtime", tarfile.SYMTYPE, link="/usr/share/zoneinfo/UTC"),
    entry_member("./usr", tarfile.DIRTYPE),
    entry_member("./usr/lib", tarfile.DIRTYPE),
    entry_member("./lib", tarfile.SYMTYPE, link="usr/lib"),
    entry_member("./etc/hostname.bak", tarfile.LNKTYPE, link="./etc/hostname"),
    entry_member("./dev", tarfile.DIRTYPE),
    entry_member("./dev/null", tarfile.CHRTYPE, major=1, minor=3),
)


def test_a_normal_root_passes_and_unpacks(tmp_path: Path) -> None:
    image = make_image(tmp_path / "good.tar.zst", *GOOD)
    report = check_tar(image)
    assert report.members == len(GOOD)
    assert report.skipped_dev == 1
    dest = tmp_path / "root"
    dest.mkdir()
    unpack_checked(image, dest)
    assert (dest / "etc/hostname").read_text() == "vm\n"
    assert (dest / "etc/localtime").readlink() == Path("/usr/share/zoneinfo/UTC")
    assert (dest / "etc/hostname.bak").stat().st_ino == (dest / "etc/hostname").stat().st_ino
    assert (dest / "dev").is_dir()
    assert list((dest / "dev").iterdir()) == []  # LXC makes /dev; nothing is unpacked there


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ((file_member("../../etc/cron.d/evil"),), "path climbs out of the image"),
        ((file_member("./etc/../../outside"),), "path climbs out of the image"),
        ((file_member("/etc/passwd"),), "absolute path"),
        ((entry_member("./evil", tarfile.SYMTYPE, link="/etc"), file_member("./evil/passwd")),
         "would be written through the symbolic link 'evil'"),
        ((entry_member("./up", tarfile.SYMTYPE, link="../../.."),),
         "points above the image root"),
        ((entry_member("./home", tarfile.DIRTYPE),
          entry_member("./home/disk", tarfile.BLKTYPE, major=8)),
         "device node outside dev/"),
        ((entry_member("./x", tarfile.LNKTYPE, link="../../etc/shadow"),),
         "hard link to '../../etc/shadow'"),
        ((entry_member("./x", tarfile.LNKTYPE, link="./not-there"),),
         "not a regular file of the image"),
    ],
    ids=["traversal", "inner traversal", "absolute", "write through symlink",
         "escaping symlink", "block device", "hard link out", "dangling hard link"],
)  # fmt: skip
def test_malicious_members_are_refused(
    tmp_path: Path, members: tuple[Member, ...], reason: str
) -> None:
    image = make_image(tmp_path / "evil.tar.zst", entry_member("./", tarfile.DIRTYPE), *members)
    with pytest.raises(ImageRejected, match=reason.replace("(", r"\(")):
        check_tar(image)
    dest = tmp_path / "root"
    dest.mkdir()
    with pytest.raises(ImageRejected):
        unpack_checked(image, dest)
    assert list(dest.iterdir()) == []  # nothing was written


def test_not_an_image(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not gzip")
    with pytest.raises(ImageRejected, match=r"cannot decompress|not a readable tar"):
        check_tar(junk)
    with pytest.raises(ImageRejected, match="not an LXC image"):
        check_tar(tmp_path / "disk.qcow2")
    empty = make_image(tmp_path / "empty.tar")
    with pytest.raises(ImageRejected, match="the archive is empty"):
        check_tar(empty)
