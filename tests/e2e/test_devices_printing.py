"""Printing end to end: `qvd-client` (printing on, its CUPS a private cupsd on this
machine) → L7R → an LXC desktop whose VM has ``vma.printing.enable=1``. The desktop gets
a queue for the client's printer; ``lp`` as the session's user inside the desktop puts
the job in the client's queue, through nxagent's printing channel and the client's
nxproxy. When the client goes away the queue goes; a client without printing gets none
(and nxagent opens no printing channel)."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.di.testbed import Xvfb
from tests.cupsd import PrivateCupsd
from tests.e2e.devices import set_vm_property, start_client
from tests.e2e.node import Client, L7rNode, in_vm, set_password
from tests.hkd.conftest import runtime, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm

pytestmark = pytest.mark.timeout(900)


def desktop_queues(lxc: LxcNode, vm_id: int) -> list[str]:
    done = in_vm(lxc, vm_id, "env", "LC_ALL=C", "lpstat", "-e")
    return done.stdout.split()


def session_user(lxc: LxcNode, vm_id: int) -> str:
    """The login of the desktop's session (the owner of its xterm)."""
    uid = in_vm(lxc, vm_id, "ps", "-C", "xterm", "-o", "uid=").stdout.split()[0]
    return in_vm(lxc, vm_id, "getent", "passwd", uid).stdout.split(":")[0]


def lp_as(lxc: LxcNode, vm_id: int, user: str, queue: str, data: bytes) -> float:
    """``lp -d queue`` of ``data`` as ``user`` in the desktop; the time (epoch seconds,
    the container's clock is this machine's) just before lp started."""
    done = subprocess.run(
        ["lxc-attach", "-P", str(lxc.root / lxc.name / "lxc"), "-n", f"qvd-{vm_id}", "--",
         "runuser", "-u", user, "--", "sh", "-c", 'date +%s.%N; exec lp -d "$0" -t qvd-e2e',
         queue],
        input=data, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return float(done.stdout.split()[0])


def diagnose(lxc: LxcNode, vm_id: int, client: Client, cupsd: PrivateCupsd) -> str:
    parts = [f"client:\n{client.output()}", f"client cupsd:\n{cupsd.log_tail()}"]
    for path in ("/var/log/qvd/vma.log", "/var/log/qvd/cupsd.log", "/var/log/cups/error_log"):
        done = in_vm(lxc, vm_id, "tail", "-n", "30", path)
        parts.append(f"{path}:\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


def test_print_in_the_desktop_comes_out_of_the_clients_cups(
    engine: Engine, node: L7rNode, test_image: Path, tmp_path: Path
) -> None:
    lxc = node.lxc
    vm_id, _ = add_lxc_vm(engine, lxc, test_image, 1)
    set_vm_property(engine, vm_id, "vma.printing.enable", "1")
    login = set_password(engine, vm_id, "s3cret!")
    password_file = tmp_path / "password"
    password_file.write_text("s3cret!\n")

    def connect(home: str, settings: dict[str, str]) -> Client:
        client = start_client(
            tmp_path / home, display=xvfb.display, port=node.port, login=login,
            password_file=password_file, vm_id=vm_id, settings=settings,
        )  # fmt: skip
        clients.append(client)
        return client

    def connected() -> bool:
        return str(runtime(engine, vm_id)["user_state"]) == "connected"

    def disconnected() -> bool:
        return str(runtime(engine, vm_id)["user_state"]) == "disconnected"

    clients: list[Client] = []
    xvfb = Xvfb()
    cupsd = PrivateCupsd()
    try:
        target = cupsd.add_file_queue("Office", default=True)
        client = connect(
            "one", {"client.printing.enable": "1", "client.printing.port": str(cupsd.port)}
        )
        wait_for(connected, 120, "the session connected")
        try:
            wait_for(lambda: "Office" in desktop_queues(lxc, vm_id), 60, "the desktop's queue")
        except AssertionError as exc:
            raise AssertionError(diagnose(lxc, vm_id, client, cupsd)) from exc
        default = in_vm(lxc, vm_id, "env", "LC_ALL=C", "lpstat", "-d").stdout
        assert default.strip().endswith(": Office"), default

        user = session_user(lxc, vm_id)
        assert user != "root"
        marker = f"qvd-e2e-print-{uuid.uuid4()}".encode()
        started = lp_as(lxc, vm_id, user, "Office", b"first line\n" + marker + b"\nlast line\n")
        try:
            printed = cupsd.wait_for_output(target, marker, 120)
        except TimeoutError as exc:
            raise AssertionError(diagnose(lxc, vm_id, client, cupsd)) from exc
        print(f"print_ms={(time.time() - started) * 1000:.0f} (lp in the desktop → file)")
        assert printed == b"first line\n" + marker + b"\nlast line\n"

        # suspend (the client goes away): the desktop's queue goes too
        client.close()
        wait_for(disconnected, 30, "the session suspended")
        wait_for(lambda: desktop_queues(lxc, vm_id) == [], 60, "the queue removed on suspend")

        # a client without printing: no channel, no queue
        connect("two", {"client.printing.enable": "0"})
        wait_for(connected, 120, "the session resumed")
        options = in_vm(lxc, vm_id, "cat", "/var/run/qvd/nxagent.conf").stdout
        assert options, "nxagent's options file"
        assert "cups=" not in options
        assert desktop_queues(lxc, vm_id) == []
    finally:
        for each in clients:
            each.close()
        cupsd.close()
        xvfb.close()
