"""The QMP protocol object fed bytes (no I/O), and the client against a real QEMU
(``-machine none``: QMP works without a guest)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.hkd.backends.kvm.qmp import QmpClient, QmpError, QmpProtocol
from tests.conftest import end_process

GREETING = (
    b'{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}}, "capabilities": []}}\r\n'
)


def negotiated() -> QmpProtocol:
    qmp = QmpProtocol()
    qmp.receive(GREETING)
    assert qmp.negotiate() == b'{"execute": "qmp_capabilities"}\n'
    qmp.receive(b'{"return": {}}\r\n')
    assert qmp.next_reply() is not None
    return qmp


def test_greeting_negotiation_command_reply() -> None:
    qmp = negotiated()
    assert qmp.greeting is not None
    assert qmp.greeting["version"]["qemu"]["major"] == 7
    frame = qmp.command("query-status")
    assert json.loads(frame) == {"execute": "query-status"}
    for byte in b'{"return": {"status": "running", "running": true}}\r\n':
        assert qmp.next_reply() is None
        qmp.receive(bytes([byte]))  # byte by byte
    reply = qmp.next_reply()
    assert reply is not None
    assert reply.value == {"status": "running", "running": True}


def test_events_are_kept_apart_from_replies() -> None:
    qmp = negotiated()
    qmp.command("system_powerdown")
    qmp.receive(
        b'{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}\r\n'
        b'{"return": {}}\r\n'
    )
    reply = qmp.next_reply()
    assert reply is not None
    assert reply.value == {}
    assert [e["event"] for e in qmp.events] == ["POWERDOWN"]


def test_an_error_reply_carries_qemus_reason() -> None:
    qmp = negotiated()
    qmp.command("nope", {"a": 1})
    qmp.receive(
        b'{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}\n'
    )
    reply = qmp.next_reply()
    assert reply is not None
    assert reply.error == "The command nope has not been found"


@pytest.mark.parametrize(
    "data",
    [b"not json\n", b"[1, 2]\n", b'{"return": {}}\n', b'{"something": 1}\n', b"", b"x" * (2 << 20)],
)
def test_a_peer_that_is_not_qemu_is_refused(data: bytes) -> None:
    qmp = QmpProtocol()
    if data.startswith(b'{"return"') or data.startswith(b'{"something'):
        qmp.receive(GREETING)  # past the greeting: an unasked answer, an unknown kind
    with pytest.raises(QmpError):
        qmp.receive(data)


def test_commands_out_of_order_are_refused() -> None:
    with pytest.raises(QmpError):
        QmpProtocol().command("query-status")
    with pytest.raises(QmpError):
        QmpProtocol().negotiate()


# ---- a real QEMU ----------------------------------------------------------------------
@pytest.fixture
def qemu_socket(root_only: None, tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "qmp.sock"
    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
         "-qmp", f"unix:{sock},server=on,wait=off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        yield sock
    finally:
        end_process(proc)


def test_the_client_talks_to_qemu(qemu_socket: Path) -> None:
    with QmpClient(qemu_socket, timeout=10) as qmp:
        assert qmp.protocol.greeting is not None
        status = qmp.execute("query-status")
        assert status["status"] in {"running", "prelaunch"}
        with pytest.raises(QmpError, match="not been found"):
            qmp.execute("no-such-command")
        qmp.execute("quit")
    deadline = time.monotonic() + 10
    gone = False
    while not gone and time.monotonic() < deadline:
        try:
            with QmpClient(qemu_socket, timeout=1) as again:
                again.execute("query-status")
        except QmpError:
            gone = True  # the socket refuses or is removed
        time.sleep(0.05)
    assert gone


def test_a_socket_nobody_serves_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QmpError, match="QMP socket"):
        QmpClient(tmp_path / "none.sock", timeout=1).connect()
