"""A bench ended by SIGTERM (a timeout's kill) removes what it made: its PostgreSQL
cluster, bridge, routes, nftables tables, containers and files (bench/benchkit.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.hkd.conftest import test_image

__all__ = ["test_image"]

REPO = Path(__file__).resolve().parents[2]
_SETUP = re.compile(r"^L7R on \S+, VMs on (\S+) (\S+), files in (\S+)$")

pytestmark = pytest.mark.timeout(600)  # marked lxc, root and slow by its test_image


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


@pytest.mark.usefixtures("root_only")  # the bench makes bridges and containers
def test_a_bench_killed_after_its_setup_leaves_nothing(test_image: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "l7r.py"), "--quick"],
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
        # what the setup made exists now (else the check below would prove nothing)
        assert bridge in _run("ip", "-br", "link", "show")
        assert bridge in _run("nft", "list", "tables")
        assert Path(root, "pg").is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 128 + signal.SIGTERM, "\n".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert bridge not in _run("ip", "-br", "link", "show")
    assert subnet not in _run("ip", "-4", "route", "show", "table", "all")
    assert bridge not in _run("nft", "list", "tables")
    assert not Path(root).exists()
    assert root not in _run("ps", "-eo", "args")  # no postgres, container or helper left
