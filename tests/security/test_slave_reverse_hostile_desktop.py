"""A hostile desktop against the client's slave server (a desktop folder opened on the
client): the real server on a socketpair, as nxproxy runs it. Without the key nothing
happens; a name that is not one plain directory name never reaches a path; a link the
desktop's user planted (or anyone) is never followed; many requests are bounded; and
nothing is left mounted or made outside the allowed folder."""

from __future__ import annotations

import fcntl
import os
from contextlib import ExitStack
from pathlib import Path

import pytest

from qvd.client.slaveserver import MAX_CONNECTIONS
from tests.slaveserver import KEY, fuse_works, mounted, open_channel, share_head, wait_for

needs_fuse = pytest.mark.skipif(
    not fuse_works(), reason="no /dev/fuse, sshfs, fusermount3 or sftp-server here"
)


def _fuse_mounts_below(path: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [line.split(" ")[4] for line in fh if " - fuse" in line]
    return [p for p in points if p.startswith(str(path))]


@pytest.mark.parametrize("key", ["", "wrong", KEY + "x", KEY[:-1]])
def test_without_the_key_nothing_is_made(tmp_path: Path, key: str) -> None:
    base = tmp_path / "QVD"
    head = share_head("Documents", key=key) if key else (
        b"GET /shares/Documents HTTP/1.1\r\nUpgrade: qvd:sftp/1.0\r\n\r\n"
    )  # fmt: skip
    with open_channel(head, base) as channel:
        assert channel.status == 401
        assert "key" in channel.body
    assert not base.exists()


@pytest.mark.parametrize(
    "name", ["..", "%2e%2e", ".", "a%2fb", "a/b", "..%2f..%2fetc", "%00", "a%0ab", "%ff", "x" * 65]
)
def test_names_that_are_not_one_directory_are_refused(tmp_path: Path, name: str) -> None:
    base = tmp_path / "allowed" / "QVD"
    with open_channel(share_head(name), base) as channel:
        assert channel.status == 400, channel.body
    assert not base.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made anywhere


@needs_fuse
def test_a_planted_link_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "QVD"
    base.mkdir(mode=0o700)
    (base / "Documents").symlink_to(outside)
    folder = tmp_path / "desktop" / "Documents"
    folder.mkdir(parents=True)
    (folder / "planted.txt").write_text("desktop data\n")
    with open_channel(share_head("Documents"), base, folder=folder) as channel:
        assert channel.status == 101
        assert wait_for(lambda: mounted(base / "Documents"))
        assert not (base / "Documents").is_symlink()
        assert not mounted(outside)
        assert list(outside.iterdir()) == []
    assert _fuse_mounts_below(tmp_path) == []


@needs_fuse
def test_a_base_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "QVD"
    base.symlink_to(outside)
    with open_channel(share_head("Documents"), base, folder=tmp_path) as channel:
        assert channel.status == 500
    assert list(outside.iterdir()) == []
    assert _fuse_mounts_below(tmp_path) == []


@needs_fuse
def test_many_requests_are_bounded_and_nothing_is_left(tmp_path: Path) -> None:
    base = tmp_path / "QVD"
    with ExitStack() as stack:
        statuses = []
        for index in range(4):
            folder = tmp_path / "desktop" / f"f{index}"
            folder.mkdir(parents=True)
            channel = stack.enter_context(
                open_channel(share_head(f"f{index}"), base, folder=folder, max_open=2)
            )
            if channel.status == 101:
                assert wait_for(lambda i=index: mounted(base / f"f{i}"))
            statuses.append((channel.status, channel.body))
        assert [status for status, _ in statuses] == [101, 101, 503, 503]
        assert "open already" in statuses[2][1]
        assert len(_fuse_mounts_below(base)) == 2
    assert _fuse_mounts_below(tmp_path) == []
    assert list(base.iterdir()) == []


def test_a_connection_flood_is_refused_at_once(tmp_path: Path) -> None:
    """Every slot held (earlier connections still waiting or mounted): the next server
    refuses before reading anything; a freed slot serves again."""
    slots = tmp_path / "slots"
    slots.mkdir(mode=0o700)
    held = []
    for index in range(MAX_CONNECTIONS):
        fd = os.open(slots / f"slot-{index}", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(fd)
    try:
        with open_channel(share_head("Documents"), tmp_path / "QVD", slots=slots) as channel:
            assert channel.status == 503
            assert "slave connections are open already" in channel.body
        os.close(held.pop())
        with open_channel(share_head("Documents", key="wrong"), tmp_path / "QVD",
                          slots=slots) as channel:  # fmt: skip
            assert channel.status == 401
    finally:
        for fd in held:
            os.close(fd)
