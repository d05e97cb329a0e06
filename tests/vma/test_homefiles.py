"""``qvd.vma.homefiles``: root writes into a user's home without following links.

Runs as root on a temporary directory (the functions chown to another uid)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qvd.vma.homefiles import (
    HomeError,
    ensure_private_dir,
    open_home,
    write_file_below,
    write_private_file,
)

UID, GID = 23457, 23457


@pytest.fixture
def home(tmp_path: Path, root_only: None) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o750)
    os.chown(path, UID, GID)
    return path


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("root:x:0:0\n")
    path.chmod(0o644)
    return path


def test_a_new_file_is_private_and_owned_by_the_user(home: Path) -> None:
    with open_home(str(home)) as fd:
        write_private_file(fd, ".Xauthority", b"cookie", UID, GID)
    made = (home / ".Xauthority").stat()
    assert (made.st_uid, made.st_gid, made.st_mode & 0o777) == (UID, GID, 0o600)
    assert (home / ".Xauthority").read_bytes() == b"cookie"
    assert sorted(p.name for p in home.iterdir()) == [".Xauthority"]  # no temp file left


def test_a_symlink_in_place_of_the_file_is_replaced_not_followed(home: Path, victim: Path) -> None:
    (home / ".Xauthority").symlink_to(victim)
    with open_home(str(home)) as fd:
        write_private_file(fd, ".Xauthority", b"cookie", UID, GID)
    assert victim.read_text() == "root:x:0:0\n"
    assert victim.stat().st_uid == 0
    assert not (home / ".Xauthority").is_symlink()
    assert (home / ".Xauthority").read_bytes() == b"cookie"


def test_a_hard_link_in_place_of_the_file_is_replaced_not_written(home: Path, victim: Path) -> None:
    os.link(victim, home / ".Xauthority")
    with open_home(str(home)) as fd:
        write_private_file(fd, ".Xauthority", b"cookie", UID, GID)
    assert victim.read_text() == "root:x:0:0\n"
    assert victim.stat().st_uid == 0


def test_a_symlink_in_place_of_the_directory_is_removed_not_chowned(
    home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "etc"
    target.mkdir()
    (home / ".nx").symlink_to(target)
    with open_home(str(home)) as fd:
        ensure_private_dir(fd, ".nx", UID, GID)
    assert target.stat().st_uid == 0
    made = os.lstat(home / ".nx")
    assert (made.st_uid, made.st_mode & 0o7777) == (UID, 0o700)
    assert (home / ".nx").is_dir()
    assert not (home / ".nx").is_symlink()


def test_an_existing_directory_is_kept_and_given_to_the_user(home: Path) -> None:
    (home / ".nx").mkdir()
    (home / ".nx" / "keep").write_text("x")
    with open_home(str(home)) as fd:
        ensure_private_dir(fd, ".nx", UID, GID)
    assert (home / ".nx").stat().st_uid == UID
    assert (home / ".nx" / "keep").read_text() == "x"


def test_a_home_that_is_a_link_is_refused(tmp_path: Path, root_only: None) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").symlink_to(elsewhere)
    with pytest.raises(HomeError), open_home(str(tmp_path / "linked")):
        pass


def test_names_with_a_slash_are_refused(home: Path) -> None:
    with open_home(str(home)) as fd, pytest.raises(HomeError):
        write_private_file(fd, "../x", b"", UID, GID)


def test_write_file_below_makes_missing_directories(tmp_path: Path, root_only: None) -> None:
    write_file_below(str(tmp_path), ("etc", "qvd"), "vma.secret", b"s\n")
    made = tmp_path / "etc" / "qvd" / "vma.secret"
    assert made.read_bytes() == b"s\n"
    assert made.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "etc" / "qvd").stat().st_mode & 0o777 == 0o755


def test_write_file_below_refuses_a_linked_directory(
    tmp_path: Path, victim: Path, root_only: None
) -> None:
    (tmp_path / "upper").mkdir()
    (tmp_path / "upper" / "etc").symlink_to(victim.parent)
    with pytest.raises(HomeError):
        write_file_below(str(tmp_path / "upper"), ("etc",), "victim", b"s\n")
    assert victim.read_text() == "root:x:0:0\n"
