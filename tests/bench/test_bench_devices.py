"""bench/devices.py runs whole on a real LXC node with the real client: its figures on
the last line (a number for every device in the tree, ``nan`` only for one that is
not), and nothing left behind (node files, the client's cupsd and PulseAudio)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.hkd.conftest import test_image as test_image

REPO = Path(__file__).resolve().parents[2]
FIGURES = {  # figure: the modules of its device
    "print_ms": ("qvd.vma.printing", "qvd.client.printing"),
    "audio_start_ms": ("qvd.vma.audio", "qvd.client.audio"),
    "share_ratio": ("qvd.vma.shares", "qvd.client.shares"),
    "audio_opus_start_ms": ("qvd.vma.opus", "qvd.client.opus"),
    "audio_opus_ratio": ("qvd.vma.opus", "qvd.client.opus"),
}
LEFTOVERS = ("qvd-bench-devices-*", "qvd-cupsd-*", "qvdpa-*")

pytestmark = pytest.mark.timeout(600)


def _in_tree(modules: tuple[str, ...]) -> bool:
    return all((REPO / "src" / Path(*m.split("."))).with_suffix(".py").exists() for m in modules)


def test_the_devices_bench_prints_its_figures_last(test_image: Path) -> None:
    tmp = Path(tempfile.gettempdir())
    before = {pattern: set(tmp.glob(pattern)) for pattern in LEFTOVERS}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "devices.py"), "--quick"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=500, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    pairs = dict(part.split("=", 1) for part in lines[-1].split())
    assert tuple(pairs) == tuple(FIGURES), lines[-1]
    for name, value in pairs.items():
        if _in_tree(FIGURES[name]):
            assert re.fullmatch(r"\d+(\.\d+)?", value), (name, value, done.stdout)
            assert 0 < float(value) < 60_000, (name, value)
        else:
            assert value == "nan", (name, value)
            assert "has not landed" in done.stdout  # the bench said why
    for pattern, found in before.items():
        # nothing of the bench's is left (another run's directory may have gone meanwhile)
        assert set(tmp.glob(pattern)) <= found, pattern
