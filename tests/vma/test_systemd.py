"""The VMA under systemd: the unit's text and installation, readiness notification on
a real socket, the PID 1 hand-over's fallback and the halt signals of a VMA init."""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qvd.vma.main import exec_init
from qvd.vma.systemd import in_container, notify, unit_text


def test_the_unit_runs_the_vma_as_a_restarted_notify_service_without_a_network_wait() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    text = unit_text()
    unit.read_string(text)
    service = unit["Service"]
    assert service["ExecStart"] == "/usr/lib/qvd/bin/qvd-vma"
    assert (service["Type"], service["Restart"], service["KillSignal"]) == (
        "notify", "always", "SIGTERM",
    )  # fmt: skip
    assert "network-online.target" not in text  # LXC sets the address before init
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_reaches_the_socket_systemd_names(tmp_path: Path, abstract: bool) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        if abstract:
            name = f"qvd-test-notify-{os.getpid()}"
            listener.bind("\0" + name)
            address = "@" + name
        else:
            address = str(tmp_path / "notify")
            listener.bind(address)
        listener.settimeout(5)
        assert notify("READY=1", {"NOTIFY_SOCKET": address})
        assert listener.recv(100) == b"READY=1"


def test_notify_without_systemd_does_nothing() -> None:
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "relative"})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify"})


def test_an_init_that_cannot_be_started_leaves_the_vma_as_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exec_init(str(tmp_path / "no-such-init"))  # returns instead of replacing the process
    assert "cannot exec" in capsys.readouterr().err


@pytest.mark.parametrize("sent", ["SIGRTMIN+3", "SIGRTMIN+4", "SIGTERM", "SIGPWR"])
def test_a_vma_init_turns_halt_and_poweroff_signals_into_sigterm(sent: str) -> None:
    """The HKD halts any container with SIGRTMIN+3 (systemd's halt); the VMA as init
    takes it, and the others, as a request to stop."""
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        from qvd.vma.main import run_as_init
        child = os.fork()
        if child == 0:
            signal.signal(signal.SIGTERM, lambda *_: os._exit(7))
            wanted = 1 << (signal.SIGRTMIN + 4 - 1)
            while True:  # until the init's handlers are set
                with open(f"/proc/{os.getppid()}/status") as status:
                    caught = int(status.read().split("SigCgt:")[1].split()[0], 16)
                if caught & wanted:
                    break
                time.sleep(0.01)
            os.write(1, b"ready\\n")
            while True:
                time.sleep(1)
        sys.exit(run_as_init(child))
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            number = signal.SIGRTMIN + int(sent[-1]) if "RTMIN" in sent else signal.Signals[sent]
            proc.send_signal(number)
            assert proc.wait(timeout=30) == 7
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_container_is_recognised_by_the_variable_lxc_gives_its_init(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("container", "lxc")
    assert in_container()
