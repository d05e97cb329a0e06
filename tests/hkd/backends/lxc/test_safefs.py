"""Writing into a tenant-controlled upper layer never follows a link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from qvd.hkd.backends.lxc.safefs import UnsafePath, shift_owners, write_private_file

SECRET = Path("etc/qvd/vma.secret")
OWNER = (1_000_000, 1_000_000)


def test_the_secret_is_written_private_and_owned_by_the_mapped_root(tmp_path: Path) -> None:
    write_private_file(tmp_path, SECRET, b"s3cret\n", OWNER)
    info = (tmp_path / SECRET).lstat()
    assert (tmp_path / SECRET).read_bytes() == b"s3cret\n"
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == OWNER
    for made in (tmp_path / "etc", tmp_path / "etc/qvd"):
        assert made.lstat().st_uid == OWNER[0]
        assert stat.S_IMODE(made.lstat().st_mode) == 0o755


@pytest.mark.parametrize("link_at", ["etc", "etc/qvd"])
def test_a_linked_directory_is_refused(tmp_path: Path, link_at: str) -> None:
    victim = tmp_path / "host"
    (victim / "qvd").mkdir(parents=True)
    upper = tmp_path / "upper"
    (upper / link_at).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(victim if link_at == "etc" else victim / "qvd", upper / link_at)
    with pytest.raises(UnsafePath, match="link"):
        write_private_file(upper, SECRET, b"x", OWNER)
    assert list(victim.rglob("*")) == [victim / "qvd"]


def test_a_linked_or_hard_linked_secret_is_replaced_not_written_through(tmp_path: Path) -> None:
    host_file = tmp_path / "passwd"
    host_file.write_text("root:x:0:0\n")
    upper = tmp_path / "upper"
    (upper / "etc/qvd").mkdir(parents=True)
    os.symlink(host_file, upper / SECRET)
    write_private_file(upper, SECRET, b"new\n", OWNER)
    assert host_file.read_text() == "root:x:0:0\n"
    assert not (upper / SECRET).is_symlink()
    (upper / SECRET).unlink()
    os.link(host_file, upper / SECRET)
    write_private_file(upper, SECRET, b"new\n", OWNER)
    assert host_file.read_text() == "root:x:0:0\n"
    assert host_file.stat().st_uid == 0
    assert (upper / SECRET).read_bytes() == b"new\n"


def test_a_directory_in_place_of_the_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / SECRET).mkdir(parents=True)
    with pytest.raises(UnsafePath, match="directory"):
        write_private_file(tmp_path, SECRET, b"x", OWNER)


def test_shift_owners_keeps_setuid_bits_and_ignores_other_ids(tmp_path: Path) -> None:
    tree = tmp_path / "layer"
    (tree / "upper/usr/bin").mkdir(parents=True)
    tool = tree / "upper/usr/bin/tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o4755)
    foreign = tree / "upper/foreign"
    foreign.write_text("")
    os.chown(foreign, 70000, 70000)
    os.symlink("/etc/passwd", tree / "upper/link")
    changed = shift_owners(tree, 0, 1_000_000, 65536)
    assert changed == 6  # layer, upper, usr, bin, tool, link; not the foreign file
    assert (tool.lstat().st_uid, stat.S_IMODE(tool.lstat().st_mode)) == (1_000_000, 0o4755)
    assert foreign.lstat().st_uid == 70000
    assert (tree / "upper/link").lstat().st_uid == 1_000_000
    assert Path("/etc/passwd").stat().st_uid == 0
