"""``qvd-client`` in a real session (L7R over TLS, the HKD's LXC container, the VMA,
nxagent, nxproxy into an Xvfb with a window manager):

- with one desktop and no ``--vm`` it connects straight away;
- the desktop has the requested geometry, and the one asked on reconnecting (resume);
- SIGTERM ends nxproxy and removes the client's ``qvd-client-nx-*`` directory;
- ``--restart`` stops the desktop and connects to a fresh session.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.di.testbed import Xvfb
from tests.e2e.node import Client, L7rNode, in_vm, node, set_password, xterm_pids
from tests.hkd.conftest import runtime, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.vma.helpers import wait_for_xterm, xterm_visible
from tests.vma.miniwm import MiniWm, window_size

__all__ = ["node"]  # the fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PASSWORD = "s3cret!"


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def xterm_age(lxc: LxcNode, vm_id: int) -> int:
    """Seconds the VM's xterm has been running."""
    done = in_vm(lxc, vm_id, "ps", "-C", "xterm", "-o", "etimes=")
    return min(int(w) for w in done.stdout.split())


def nx_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("qvd-client-nx-*"))


def test_straight_in_geometry_resume_sigterm_cleanup_and_restart(
    engine: Engine, node: L7rNode, test_image: Path, tmp_path: Path
) -> None:
    lxc, port = node.lxc, node.port
    vm_id, _ = add_lxc_vm(engine, lxc, test_image, 1)
    login = set_password(engine, vm_id, PASSWORD)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    temp = tmp_path / "tmp"  # the clients' temporary directory, to be left empty
    temp.mkdir()
    xvfb = Xvfb("1280x800x24")
    wm = MiniWm(xvfb.display)
    clients: list[Client] = []
    src = str(Path(__file__).resolve().parents[2] / "src")

    def start(home: str, *extra: str) -> Client:
        env = {**os.environ, "DISPLAY": xvfb.display, "HOME": str(tmp_path / home),
               "TMPDIR": str(temp), "PYTHONPATH": src}  # fmt: skip
        env.pop("NX_ROOT", None)
        argv = ["--host", "127.0.0.1", "--port", str(port), "--user", login, "--password-file",
                str(password_file), "--insecure", "--link", "lan", *extra]  # fmt: skip
        client = Client(argv, env)
        clients.append(client)
        return client

    def terminate(client: Client) -> None:
        """SIGTERM to the client alone: it must end nxproxy and its files itself."""
        proxies = client.children()
        assert proxies, client.output()
        assert nx_dirs(temp), "the client made no NX directory"
        os.kill(client.proc.pid, signal.SIGTERM)
        assert client.proc.wait(20) == 128 + signal.SIGTERM, client.output()
        assert nx_dirs(temp) == []
        assert not [pid for pid in proxies if running(pid)], "nxproxy outlived the client"

    def agent_window(wanted: tuple[int, int], client: Client) -> None:
        wait_for(lambda: window_size(xvfb.display) == wanted, 60, f"an agent window {wanted}")

    try:
        # one desktop, no --vm: straight in, at the requested size
        first = start("one", "--geometry", "1000x700")
        agent_window((1000, 700), first)
        assert xterm_visible(wait_for_xterm(xvfb.display, 60)), first.output()
        wait_for(lambda: runtime(engine, vm_id)["user_state"] == "connected", 30, "connected")
        session = xterm_pids(lxc, vm_id)
        assert len(session) == 1
        terminate(first)
        wait_for(lambda: runtime(engine, vm_id)["user_state"] == "disconnected", 30, "gone")

        # reconnect asking for another size: the same session, resized
        second = start("two", "--geometry", "800x600", "--vm", str(vm_id))
        agent_window((800, 600), second)
        wait_for(lambda: runtime(engine, vm_id)["user_state"] == "connected", 30, "again")
        assert xterm_pids(lxc, vm_id) == session
        terminate(second)
        wait_for(lambda: runtime(engine, vm_id)["user_state"] == "disconnected", 30, "gone")

        # restart: stopped, then a fresh session
        before = time.monotonic()
        third = start("three", "--restart", str(vm_id), "--geometry", "1000x700")
        wait_for(lambda: "Machine stopped" in third.output(), 180, "the stop")
        agent_window((1000, 700), third)
        wait_for(lambda: bool(xterm_pids(lxc, vm_id)), 60, "a new X session")
        # PIDs repeat in a new container's namespace: the X session's age tells
        assert xterm_age(lxc, vm_id) <= time.monotonic() - before + 1, third.output()
        terminate(third)
    finally:
        for client in clients:
            client.close()
        wm.close()
        xvfb.close()
