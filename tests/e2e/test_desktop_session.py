"""The whole product, end to end: `qvd-client` → L7R (TLS) → the HKD starts an LXC
container → VMA → nxagent → the client's nxproxy draws the session into an Xvfb,
where a screenshot must show the xterm. Then reconnecting, a takeover by a second
client, and `user_state` following every step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.di.screenshot import take_screenshot
from qvd.di.testbed import Xvfb
from tests.e2e.node import Client, L7rNode, in_vm, set_password, xterm_pids
from tests.hkd.conftest import runtime, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.vma.helpers import wait_for_xterm, xterm_visible

pytestmark = pytest.mark.timeout(900)


def user_state(engine: Engine, vm_id: int) -> str:
    return str(runtime(engine, vm_id)["user_state"])


def diagnose(client: Client, home: Path, node: LxcNode, vm_id: int) -> str:
    """Everything that tells why no desktop came: client, nxproxy, VMA and nxagent logs."""
    parts = [f"client:\n{client.output()}"]
    nxlog = home / "nx" / "nxproxy.log"
    parts.append(f"nxproxy.log:\n{nxlog.read_text()[-2000:] if nxlog.exists() else '-'}")
    for name in ("vma.log", "nxagent.log", "x-session.log"):
        done = in_vm(node, vm_id, "tail", "-n", "30", f"/var/log/qvd/{name}")
        parts.append(f"{name}:\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


def test_log_in_see_the_desktop_reconnect_and_take_over(
    engine: Engine, node: L7rNode, test_image: Path, tmp_path: Path, evidence_dir: Path
) -> None:
    lxc, port = node.lxc, node.port
    vm_id, _ = add_lxc_vm(engine, lxc, test_image, 1)
    login = set_password(engine, vm_id, "s3cret!")
    password_file = tmp_path / "password"
    password_file.write_text("s3cret!\n")

    xvfb = Xvfb()
    clients: list[Client] = []

    def connect(home: str) -> Client:
        env = {**os.environ, "DISPLAY": xvfb.display, "HOME": str(tmp_path / home),
               "NX_ROOT": str(tmp_path / home / "nx")}  # fmt: skip
        argv = ["--host", "127.0.0.1", "--port", str(port), "--user", login, "--password-file",
                str(password_file), "--vm", str(vm_id), "--insecure", "--link", "lan"]  # fmt: skip
        client = Client(argv, env)
        clients.append(client)
        return client

    try:
        # the list works and shows the VM
        listing = subprocess.run(
            [sys.executable, "-m", "qvd.client.main", "--host", "127.0.0.1", "--port", str(port),
             "--user", login, "--password-file", str(password_file), "--list", "--insecure"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "HOME": str(tmp_path / "lister")},
        )  # fmt: skip
        assert listing.returncode == 0, listing.stdout + listing.stderr
        assert str(vm_id) in listing.stdout

        # cold: the VM is stopped; the client's connect starts it
        first = connect("one")
        shot = wait_for_xterm(xvfb.display, 90)
        shot.save_png(evidence_dir / "e2e-desktop.png")
        assert xterm_visible(shot), diagnose(first, tmp_path / "one", lxc, vm_id)
        wait_for(lambda: user_state(engine, vm_id) == "connected", 10, "user_state connected")
        assert runtime(engine, vm_id)["vm_state"] == "running"
        session = xterm_pids(lxc, vm_id)
        assert len(session) == 1

        # the client goes away: the session is suspended, the user disconnected
        first.close()
        wait_for(lambda: user_state(engine, vm_id) == "disconnected", 15, "disconnected")

        # reconnect: the same X session comes back
        assert not xterm_visible(take_screenshot(xvfb.display))  # the client's window is gone
        second = connect("two")
        wait_for(lambda: user_state(engine, vm_id) == "connected", 60, "connected again")
        assert xterm_visible(wait_for_xterm(xvfb.display, 60)), diagnose(
            second, tmp_path / "two", lxc, vm_id
        )
        assert xterm_pids(lxc, vm_id) == session

        # takeover: a second client for the same VM ends the first one's session
        third = connect("three")
        wait_for(lambda: second.proc.poll() is not None, 60, "the first client cut off")
        wait_for(lambda: user_state(engine, vm_id) == "connected", 60, "taken over")
        assert xterm_visible(wait_for_xterm(xvfb.display, 60)), diagnose(
            third, tmp_path / "three", lxc, vm_id
        )
        assert xterm_pids(lxc, vm_id) == session
        third.close()
        wait_for(lambda: user_state(engine, vm_id) == "disconnected", 15, "disconnected")
    finally:
        for client in clients:
            client.close()
        xvfb.close()
