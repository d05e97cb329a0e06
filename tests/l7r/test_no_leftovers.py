"""Tests that stop their own PostgreSQL cluster leave nothing in the temp directory:
the HKD's database-restart test (``qvd-test-pg-restart-*``) and the L7R's outage test
(``qvd-test-pg-outage-*``) run in a pytest of their own with a private TMPDIR."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import scratch_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_stopping_tests_remove_their_directories() -> None:
    private = scratch_dir("qvd-test-leftovers-")  # postgres must be able to traverse it
    try:
        env = {**os.environ, "TMPDIR": str(private), "PYTHONPATH": str(ROOT / "src")}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/hkd/test_daemon.py::test_a_database_outage_longer_than_the_fence_keeps_every_vm",
             "tests/l7r/test_db_outage.py"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=540, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert "2 passed" in done.stdout
        left = sorted(p.name for p in private.iterdir() if p.name.startswith("qvd-test-pg-"))
        assert left == []
    finally:
        shutil.rmtree(private, ignore_errors=True)
