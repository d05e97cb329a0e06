"""Shared folders end to end: the real ``qvd-client`` (under Xvfb) shares two local folders,
one read-only; the L7R on a real LXC node connects it to a desktop whose VM has
``vma.slave.enable=1``; the desktop's ``qvd-vma-slave`` mounts them with sshfs over the NX
slave channel on ``~/Redirected/<name>``. Files go both ways with their content and mode,
the read-only share refuses writes, and the mounts are gone once the client left."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.di.testbed import Xvfb
from tests.e2e.devices import set_vm_property, start_client, wait_until
from tests.e2e.fusenode import Desktop, fuse_node
from tests.e2e.node import L7rNode, set_password
from tests.hkd.lxcnode import add_lxc_vm

__all__ = ["fuse_node"]

pytestmark = pytest.mark.timeout(600)


def test_a_client_folder_in_the_desktop_both_ways(
    engine: Engine, fuse_node: L7rNode, test_image: Path, tmp_path: Path
) -> None:
    lxc, port = fuse_node.lxc, fuse_node.port
    vm_id, _ = add_lxc_vm(engine, lxc, test_image, 1)
    set_vm_property(engine, vm_id, "vma.slave.enable", "1")
    login = set_password(engine, vm_id, "s3cret!")
    password_file = tmp_path / "password"
    password_file.write_text("s3cret!\n")

    share = tmp_path / "client" / "share"
    read_only = tmp_path / "client" / "readonly"
    for folder in (share, read_only):
        folder.mkdir(parents=True)
    (share / "hello.txt").write_text("hello from the client\n")
    (share / "hello.txt").chmod(0o640)
    (read_only / "keep.txt").write_text("read me only\n")
    xvfb = Xvfb()
    client = start_client(
        tmp_path / "home", display=xvfb.display, port=port, login=login,
        password_file=password_file, vm_id=vm_id,
        settings={"client.share.1": str(share), "client.share.2": f"{read_only};ro"},
    )  # fmt: skip
    desktop = Desktop(lxc, vm_id)
    try:
        wait_until(desktop.find_user, 120, "the session's nxagent")
        hello = "~/Redirected/share/hello.txt"

        def mounted() -> bool:
            return desktop.sh(f"cat {hello}")[1] == "hello from the client\n"

        try:
            wait_until(mounted, 60, "the share in the desktop")
        except AssertionError:
            raise AssertionError(
                f"client:\n{client.output()}\n{desktop.logs()}\n{desktop.mounts()}"
            ) from None
        assert "fuse.sshfs" in desktop.mounts()
        assert desktop.sh(f"stat -c %a {hello}")[1].strip() == "640"
        assert desktop.sh(f"stat -c %U {hello}")[1].strip() == desktop.user  # idmap=user

        # the desktop writes: the file is on the client, content and mode
        code, out = desktop.sh(
            "printf 'written in the desktop\\n' > ~/Redirected/share/from-vm.txt && "
            "chmod 600 ~/Redirected/share/from-vm.txt"
        )
        assert code == 0, out
        wait_until((share / "from-vm.txt").exists, 20, "the desktop's file on the client")
        assert (share / "from-vm.txt").read_text() == "written in the desktop\n"
        assert (share / "from-vm.txt").stat().st_mode & 0o777 == 0o600

        # a file the client adds later shows up in the desktop
        (share / "later.txt").write_text("added later\n")
        wait_until(
            lambda: desktop.sh("cat ~/Redirected/share/later.txt")[1] == "added later\n",
            30, "the client's new file in the desktop",
        )  # fmt: skip

        # the read-only share reads, and refuses any write
        assert desktop.sh("cat ~/Redirected/readonly/keep.txt")[1] == "read me only\n"
        code, out = desktop.sh("echo x > ~/Redirected/readonly/new.txt")
        assert code != 0
        assert "denied" in out.lower() or "read-only" in out.lower(), out
        code, _ = desktop.sh("rm ~/Redirected/readonly/keep.txt")
        assert code != 0
        assert sorted(p.name for p in read_only.iterdir()) == ["keep.txt"]

        # the client leaves: the channel ends, and so do the mounts
        client.close()
        wait_until(lambda: "/Redirected/" not in desktop.mounts(), 30, "the shares unmounted")
        assert (share / "hello.txt").read_text() == "hello from the client\n"
    finally:
        client.close()
        xvfb.close()
