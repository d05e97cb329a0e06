"""bench/wat.py runs whole on a small database: a real API server, Chromium, the HTTP
figures (filtered list, CSV, roles' and administrators' pages), its figures on the last
line (name=value pairs, the issue's three first), and nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIGURES = (
    "vm_list_ms", "live_update_ms", "dashboard_ms", "fcp_ms", "list_server_ms",
    "list_filtered_ms", "csv10k_ms", "role_page_ms", "role_custom_ms", "admin_page_ms",
)  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_the_wat_bench_prints_its_figures_last() -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("/usr/bin/chromium is missing: run scripts/deps-wat.sh")
    before = set(Path(tempfile.gettempdir()).glob("qvd-bench-wat-*"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "wat.py"), "--quick", "--vms", "300"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert "populated 300 VMs" in lines[0]
    pairs = dict(part.split("=", 1) for part in lines[-1].split())
    assert tuple(pairs) == FIGURES, lines[-1]
    for name, value in pairs.items():
        assert re.fullmatch(r"\d+\.\d", value), (name, value)
        assert 0 < float(value) < 60_000, (name, value)
    assert set(Path(tempfile.gettempdir()).glob("qvd-bench-wat-*")) == before  # removed
