"""Directories of clients that could not clean up (SIGKILL) go with the next client."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from qvd.client.nx import PREFIX, sweep_stale


def test_only_the_directories_of_dead_clients_go(tmp_path: Path) -> None:
    dead_pid = subprocess.Popen(["true"])  # a PID that no longer runs
    dead_pid.wait()
    dead = tmp_path / f"{PREFIX}{dead_pid.pid}-abc"
    (dead / "S-40").mkdir(parents=True)
    (dead / "nxproxy.log").write_text("log")
    alive = tmp_path / f"{PREFIX}{os.getpid()}-def"
    alive.mkdir()
    other = tmp_path / "qvd-client-nxother"
    other.mkdir()
    target = tmp_path / "keep"
    target.mkdir()
    (tmp_path / f"{PREFIX}{dead_pid.pid}-link").symlink_to(target)
    assert sweep_stale(tmp_path) == [dead]
    assert not dead.exists()
    for kept in (alive, other, target):
        assert kept.is_dir(), kept
