"""bench/kvm.py ended by SIGTERM while its guest boots removes what it made: the QEMU
process, its tap, the node's dnsmasq, bridge, routes, nftables tables, the PostgreSQL
cluster and its files (bench/benchkit.py's clean-up, for a KVM node)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.kvmnode import qemu_argv

REPO = Path(__file__).resolve().parents[2]
_SETUP = re.compile(r"^L7R on \S+, VMs on (\S+) (\S+), files in (\S+)$")

pytestmark = pytest.mark.timeout(600)  # marked lxc, root and slow by test_image_qcow2


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _processes_naming(root: str) -> list[int]:
    """PIDs whose command line names something under ``root`` (QEMU, dnsmasq, ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if root in " ".join(qemu_argv(int(entry.name))):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _qemu_under(root: str) -> list[int]:
    found = []
    for pid in _processes_naming(root):
        try:
            if qemu_argv(pid)[0].endswith("qemu-system-x86_64"):
                found.append(pid)
        except (OSError, IndexError):
            continue
    return found


@pytest.mark.usefixtures("root_only")
def test_the_kvm_bench_killed_during_a_boot_leaves_nothing(test_image_qcow2: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "kvm.py"), "--quick", "--accel", "tcg"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    lines: list[str] = []
    found: list[re.Match[str]] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            match = _SETUP.match(lines[-1])
            if match:
                found.append(match)
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(300), "the bench printed no setup line"
        assert found, "\n".join(lines)
        bridge, subnet, root = found[0].groups()
        deadline = time.monotonic() + 120
        while not _qemu_under(root):  # the guest is booting: QEMU runs
            assert proc.poll() is None, "\n".join(lines)
            assert time.monotonic() < deadline, "no QEMU started"
            time.sleep(0.05)
        assert bridge in _run("ip", "-br", "link", "show")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 128 + signal.SIGTERM, "\n".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert _processes_naming(root) == []  # no QEMU, dnsmasq, postgres or helper left
    assert bridge not in _run("ip", "-br", "link", "show")
    assert subnet not in _run("ip", "-4", "route", "show", "table", "all")
    assert bridge not in _run("nft", "list", "tables")
    assert not Path(root).exists()
