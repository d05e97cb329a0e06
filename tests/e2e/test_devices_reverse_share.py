"""A desktop folder opened on the client, end to end: the real ``qvd-client`` (under
Xvfb) connects through the L7R of a real LXC node to a desktop with
``vma.slave.enable=1``; the desktop's user runs ``qvd-share-to-client ~/Documents``
(the slave key's file and the display come from the X session's environment), which
reaches the client's nxproxy through nxagent's slave port; the client's slave server
mounts the folder with sshfs. With ``client.share.from_desktop.enable`` off the desktop
is refused with the reason and nothing is mounted; with it on a file of the desktop is
read on the client, a file the client writes lands in the desktop, and the mount is
gone once the client ends."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.di.testbed import Xvfb
from tests.e2e.fusenode import Desktop, fuse_node, set_vm_property, wait_until
from tests.e2e.node import Client, L7rNode, set_password
from tests.hkd.lxcnode import add_lxc_vm
from tests.slaveserver import mounted

__all__ = ["fuse_node"]

pytestmark = pytest.mark.timeout(600)

COMMAND = "/usr/lib/qvd/bin/qvd-share-to-client"


def _session_env(desktop: Desktop) -> str:
    """``QVD_SLAVE_KEY_FILE=… DISPLAY=…`` as the X session (xterm) has them."""
    code, out = desktop.sh(
        "tr '\\0' '\\n' < /proc/$(pgrep -u \"$(id -u)\" -o xterm)/environ"
        " | grep -E '^(QVD_SLAVE_KEY_FILE|DISPLAY)='"
    )
    assert code == 0, out
    found = dict(line.split("=", 1) for line in out.split())
    assert set(found) == {"QVD_SLAVE_KEY_FILE", "DISPLAY"}, out
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(found.items()))


def _client(port: int, login: str, vm_id: int, tmp_path: Path, conf: str) -> tuple[Client, Xvfb]:
    home = tmp_path / "home"
    (home / ".config" / "qvd").mkdir(parents=True, exist_ok=True)
    (home / ".config" / "qvd" / "client.conf").write_text(conf)
    xvfb = Xvfb()
    env = {**os.environ, "DISPLAY": xvfb.display, "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / ".config"), "NX_ROOT": str(home / "nx")}  # fmt: skip
    password = str(tmp_path / "password")
    argv = ["--host", "127.0.0.1", "--port", str(port), "--user", login, "--vm", str(vm_id),
            "--password-file", password, "--insecure", "--link", "lan"]  # fmt: skip
    return Client(argv, env), xvfb


def test_a_desktop_folder_on_the_client(
    engine: Engine, fuse_node: L7rNode, test_image: Path, tmp_path: Path
) -> None:
    lxc, port = fuse_node.lxc, fuse_node.port
    vm_id, _ = add_lxc_vm(engine, lxc, test_image, 1)
    set_vm_property(engine, vm_id, "vma.slave.enable", "1")
    login = set_password(engine, vm_id, "s3cret!")
    (tmp_path / "password").write_text("s3cret!\n")
    base = tmp_path / "desktop-folders"
    mount = base / "Documents"
    desktop = Desktop(lxc, vm_id)

    # the user did not allow desktop folders (the default): refused, with the reason
    client, xvfb = _client(port, login, vm_id, tmp_path, "client.host.name = 127.0.0.1\n")
    try:
        wait_until(desktop.find_user, 120, "the session's nxagent")
        wait_until(lambda: desktop.sh('pgrep -u "$(id -u)" xterm')[0] == 0, 60, "the X session")
        code, out = desktop.sh(
            "mkdir -p ~/Documents && echo 'from the desktop' > ~/Documents/note.txt"
        )
        assert code == 0, out
        env = _session_env(desktop)
        code, out = desktop.sh(f"{env} {COMMAND} ~/Documents")
        assert code == 1, out
        assert "refused (403)" in out, f"{out}\nclient:\n{client.output()}"
        assert "client.share.from_desktop.enable" in out
        assert not base.exists()
    finally:
        client.close()
        xvfb.close()

    # allowed: the folder is mounted on the client while the command runs
    conf = f"client.share.from_desktop.enable = 1\nclient.share.from_desktop.path = {base}\n"
    client, xvfb = _client(port, login, vm_id, tmp_path, conf)
    try:
        env = _session_env(desktop)  # after the resume (the slave key is the new one's)
        wait_until(desktop.find_user, 120, "the session's nxagent")

        def start() -> bool:
            script = shlex.quote(f'{env} exec {COMMAND} "$HOME/Documents"')
            desktop.sh(f"setsid sh -c {script} > ~/share.log 2>&1 < /dev/null &")
            return wait_until_bool(lambda: mounted(mount), 15)

        try:
            wait_until(start, 90, "the desktop folder mounted on the client")
        except AssertionError:
            log = desktop.sh("cat ~/share.log")[1]
            raise AssertionError(f"client:\n{client.output()}\n{log}\n{desktop.logs()}") from None
        assert (mount / "note.txt").read_text() == "from the desktop\n"
        (mount / "reply.txt").write_text("from the client\n")
        assert desktop.sh("cat ~/Documents/reply.txt")[1] == "from the client\n"
        client.close()
        wait_until(lambda: not mounted(mount), 30, "the desktop folder unmounted")
        # the client's slave server removes its empty mount point as it ends
        wait_until(lambda: list(base.iterdir()) == [], 30, "the mount point removed")
    finally:
        client.close()
        xvfb.close()


def wait_until_bool(check: object, timeout: float) -> bool:
    try:
        wait_until(check, timeout, "")  # type: ignore[arg-type]
    except AssertionError:
        return False
    return True
