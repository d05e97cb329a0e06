"""bench/html5.py runs whole on a real LXC node with Chromium: its figures on the last
line (name=value pairs, the issue's two first), and nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.portal import landed
from tests.hkd.conftest import test_image as test_image

REPO = Path(__file__).resolve().parents[2]
FIGURES = (
    "browser_warm_ms", "browser_cold_ms", "browser_warm_click_ms", "browser_cold_click_ms",
    "nx_warm_ms", "warm_ratio",
)  # fmt: skip
MISSING = landed("qvd.portal", "qvd.l7r.vnc")

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(bool(MISSING), reason=f"not on main yet: {', '.join(MISSING)}"),
]


def test_the_html5_bench_prints_its_figures_last(test_image: Path) -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("/usr/bin/chromium is missing: run scripts/deps-wat.sh")
    before = set(Path(tempfile.gettempdir()).glob("qvd-bench-html5-*"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "html5.py"), "--quick"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=500, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    pairs = dict(part.split("=", 1) for part in lines[-1].split())
    assert tuple(pairs) == FIGURES, lines[-1]
    for name, value in pairs.items():
        assert re.fullmatch(r"\d+(\.\d+)?", value), (name, value)
        assert 0 < float(value) < 120_000, (name, value)
    assert set(Path(tempfile.gettempdir()).glob("qvd-bench-html5-*")) == before  # removed
