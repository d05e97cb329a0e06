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
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, hash_password
from qvd.di.testbed import Xvfb
from qvd.hkd.daemon import Hkd
from qvd.node.daemons import node_services
from tests.hkd.conftest import add_host, runtime, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.vma.helpers import wait_for_xterm, xterm_visible
from tests.vma.miniwm import MiniWm, window_size

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PASSWORD = "s3cret!"


class Client:
    """A ``qvd-client`` process (its own session), its output collected."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qvd.client.main", *argv], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def children(self) -> list[int]:
        pid = self.proc.pid
        text_ = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(word) for word in text_.split()]

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def node(db: DatabaseTarget, engine: Engine, lxc_node: LxcNode) -> Iterator[tuple[Hkd, LxcNode]]:
    add_host(engine, lxc_node.name, lxc_node.host_address)
    config = lxc_node.config(**{"l7r.address": "127.0.0.1", "l7r.port": "0"})
    hkd = Hkd(config, target=db, services=node_services(config, db))
    hkd.start()
    try:
        yield hkd, lxc_node
    finally:
        hkd.stop()


def xterm_pids(node: LxcNode, vm_id: int) -> list[int]:
    done = subprocess.run(
        ["lxc-attach", "-P", str(node.root / node.name / "lxc"), "-n", f"qvd-{vm_id}", "--",
         "ps", "-C", "xterm", "-o", "pid="],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return sorted(int(w) for w in done.stdout.split())


def xterm_age(node: LxcNode, vm_id: int) -> int:
    """Seconds the VM's xterm has been running."""
    done = subprocess.run(
        ["lxc-attach", "-P", str(node.root / node.name / "lxc"), "-n", f"qvd-{vm_id}", "--",
         "ps", "-C", "xterm", "-o", "etimes="],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return min(int(w) for w in done.stdout.split())


def nx_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("qvd-client-nx-*"))


def test_straight_in_geometry_resume_sigterm_cleanup_and_restart(
    engine: Engine, node: tuple[Hkd, LxcNode], test_image: Path, tmp_path: Path
) -> None:
    hkd, lxc = node
    vm_id, _ = add_lxc_vm(engine, lxc, test_image, 1)
    with engine.begin() as conn:
        login = conn.execute(
            text("SELECT u.login FROM users u JOIN vms v ON v.user_id = u.id WHERE v.id = :v"),
            {"v": vm_id},
        ).scalar_one()
        conn.execute(
            text("UPDATE users SET password = :p WHERE login = :l"),
            {"p": hash_password(PASSWORD), "l": login},
        )
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    port = hkd.services[0].port  # type: ignore[attr-defined]
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
