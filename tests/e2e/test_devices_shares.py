"""Shared folders end to end: the real ``qvd-client`` (under Xvfb) shares two local folders,
one read-only; the L7R on a real LXC node connects it to a desktop whose VM has
``vma.slave.enable=1``; the desktop's ``qvd-vma-slave`` mounts them with sshfs over the NX
slave channel on ``~/Redirected/<name>``. Files go both ways with their content and mode,
the read-only share refuses writes, and the mounts are gone once the client left."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.di.testbed import Xvfb
from qvd.hkd.daemon import Hkd
from qvd.node.daemons import node_services
from tests.e2e.node import Client, L7rNode, in_vm, set_password
from tests.hkd.conftest import add_host
from tests.hkd.lxcnode import LxcNode, add_lxc_vm

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def fuse_node(db: DatabaseTarget, engine: Engine, lxc_node: LxcNode) -> Iterator[L7rNode]:
    """The e2e node, its desktops given /dev/fuse (``vm.lxc.fuse``)."""
    add_host(engine, lxc_node.name, lxc_node.host_address)
    config = lxc_node.config(
        **{"l7r.address": "127.0.0.1", "l7r.port": "0", "l7r.portal.enable": "0",
           "vm.lxc.fuse": "1"}
    )  # fmt: skip
    hkd = Hkd(config, target=db, services=node_services(config, db))
    hkd.start()
    try:
        yield L7rNode(hkd=hkd, lxc=lxc_node)
    finally:
        hkd.stop()


def set_vm_property(engine: Engine, vm_id: int, key: str, value: str) -> None:
    with engine.begin() as conn:
        prop = conn.execute(
            text(
                "INSERT INTO properties_list (key, tenant_id) VALUES (:k, 1) "
                "ON CONFLICT (key, tenant_id) DO UPDATE SET key = EXCLUDED.key RETURNING id"
            ),
            {"k": key},
        ).scalar_one()
        assignment = conn.execute(
            text(
                "INSERT INTO qvd_object_properties_list (property_id, qvd_object) "
                "VALUES (:p, 'vm') ON CONFLICT (property_id, qvd_object) "
                "DO UPDATE SET qvd_object = EXCLUDED.qvd_object RETURNING id"
            ),
            {"p": prop},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO vm_properties (vm_id, property_id, value) VALUES (:v, :p, :x)"),
            {"v": vm_id, "p": assignment, "x": value},
        )


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class Desktop:
    """Shell commands as the session's user inside the VM."""

    def __init__(self, lxc: LxcNode, vm_id: int) -> None:
        self.lxc, self.vm_id = lxc, vm_id
        self.user = ""

    def find_user(self) -> bool:
        done = in_vm(self.lxc, self.vm_id, "ps", "-C", "nxagent", "-o", "user=")
        self.user = done.stdout.strip().split("\n")[0].strip()
        return bool(self.user)

    def sh(self, script: str) -> tuple[int, str]:
        done = in_vm(self.lxc, self.vm_id, "su", "-s", "/bin/sh", self.user, "-c", script)
        return done.returncode, done.stdout + done.stderr

    def mounts(self) -> str:
        return in_vm(self.lxc, self.vm_id, "cat", "/proc/self/mountinfo").stdout

    def logs(self) -> str:
        parts = []
        for name in ("vma.log", "nxagent.log"):
            done = in_vm(self.lxc, self.vm_id, "tail", "-n", "40", f"/var/log/qvd/{name}")
            parts.append(f"{name}:\n{done.stdout}{done.stderr}")
        return "\n".join(parts)


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
    home = tmp_path / "home"
    (home / ".config" / "qvd").mkdir(parents=True)
    (home / ".config" / "qvd" / "client.conf").write_text(
        f"client.share.1 = {share}\nclient.share.2 = {read_only};ro\n"
    )

    xvfb = Xvfb()
    env = {**os.environ, "DISPLAY": xvfb.display, "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / ".config"), "NX_ROOT": str(home / "nx")}  # fmt: skip
    argv = ["--host", "127.0.0.1", "--port", str(port), "--user", login, "--password-file",
            str(password_file), "--vm", str(vm_id), "--insecure", "--link", "lan"]  # fmt: skip
    client = Client(argv, env)
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
        wait_until(
            lambda: "/Redirected/" not in desktop.mounts(), 30, "the shares unmounted"
        )
        assert (share / "hello.txt").read_text() == "hello from the client\n"
    finally:
        client.close()
        xvfb.close()
        print(shlex.join(argv))
