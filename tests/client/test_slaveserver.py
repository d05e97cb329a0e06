"""The client's slave server (a desktop folder opened on the client), the real program
on a socketpair as nxproxy runs it: its refusals with their reasons, and a real sshfs
mount of a real sftp-server's folder, unmounted when the channel ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.vma.slaveproto import request_head
from tests.slaveserver import fuse_works, mounted, open_channel, share_head, wait_for

needs_fuse = pytest.mark.skipif(
    not fuse_works(), reason="no /dev/fuse, sshfs, fusermount3 or sftp-server here"
)


def test_disabled_by_default_is_refused_with_the_reason(tmp_path: Path) -> None:
    base = tmp_path / "QVD"
    with open_channel(share_head("Documents"), base, enabled=False) as channel:
        assert channel.status == 403
        assert "client.share.from_desktop.enable" in channel.body
    assert channel.server.returncode == 1
    assert not base.exists()  # nothing made


def test_routes_and_methods(tmp_path: Path) -> None:
    with open_channel(share_head("Documents", method="PUT"), tmp_path) as channel:
        assert channel.status == 405
    with open_channel(request_head("POST", "/usbip", "k3y-of-this-session",
                                   "qvd:usbip/1.0"), tmp_path) as channel:  # fmt: skip
        assert channel.status == 404
    head = b"GET /shares/Documents HTTP/1.1\r\nAuthorization: Basic k3y-of-this-session\r\n\r\n"
    with open_channel(head, tmp_path) as channel:
        assert channel.status == 426
    assert list(tmp_path.iterdir()) == []


def test_a_non_utf8_charset_is_refused(tmp_path: Path) -> None:
    head = share_head("Documents").replace(b"sftp/1.0", b"sftp/1.0;charset=latin1")
    with open_channel(head, tmp_path) as channel:
        assert channel.status == 501
        assert "UTF-8" in channel.body


@needs_fuse
def test_a_desktop_folder_is_mounted_then_unmounted(tmp_path: Path) -> None:
    desktop_folder = tmp_path / "desktop" / "Documents"
    desktop_folder.mkdir(parents=True)
    (desktop_folder / "report.txt").write_text("from the desktop\n")
    base = tmp_path / "QVD"
    mount = base / "Documents"
    with open_channel(share_head("Documents"), base, folder=desktop_folder) as channel:
        assert channel.status == 101
        assert wait_for(lambda: mounted(mount))
        assert (mount / "report.txt").read_text() == "from the desktop\n"
        (mount / "reply.txt").write_text("from the client\n")  # and back
        assert (desktop_folder / "reply.txt").read_text() == "from the client\n"
        assert base.stat().st_mode & 0o777 == 0o700
        with open_channel(share_head("Documents"), base) as second:
            assert second.status == 409  # that name is open
    assert channel.server.returncode == 0
    assert not mounted(mount)
    assert not mount.exists()  # the empty mount point is removed
    assert (desktop_folder / "report.txt").exists()  # the desktop's files stay


@needs_fuse
def test_the_device_close_unmounts_what_is_left(tmp_path: Path) -> None:
    from qvd.client.desktopshares import DesktopSharesDevice
    from qvd.client.settings import ClientSettings

    desktop_folder = tmp_path / "Pictures"
    desktop_folder.mkdir()
    base = tmp_path / "QVD"
    conf = ClientSettings(
        {"client.share.from_desktop.enable": "1", "client.share.from_desktop.path": str(base)}
    )
    device = DesktopSharesDevice(conf)
    with open_channel(share_head("Pictures"), base, folder=desktop_folder) as channel:
        assert channel.status == 101
        assert wait_for(lambda: mounted(base / "Pictures"))
        device.close()  # the session ends while the desktop still serves it
        assert not mounted(base / "Pictures")


@needs_fuse
def test_sigterm_of_the_client_session_unmounts_and_cleans_up(tmp_path: Path) -> None:
    desktop_folder = tmp_path / "Music"
    desktop_folder.mkdir()
    base = tmp_path / "QVD"
    with open_channel(share_head("Music"), base, folder=desktop_folder) as channel:
        assert channel.status == 101
        assert wait_for(lambda: mounted(base / "Music"))
        channel.server.terminate()  # the client's process group is ended
        assert channel.server.wait(30) == 128 + 15
        assert not mounted(base / "Music")
        assert list(base.iterdir()) == []
