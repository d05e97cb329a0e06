"""Per-home file systems (home quotas) on real loop mounts: made once, mounted
``nosuid,nodev``, full at their size, grown (files kept) when the quota grows, never
shrunk, unmounted on release."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.hkd.backends.homefs import HomeError, ensure_home, home_image, release_home
from tests.conftest import scratch_dir


@pytest.fixture
def homes() -> Iterator[Path]:
    root = scratch_dir("qvd-test-homefs-")
    try:
        yield root / "homefs"
    finally:
        for home in (root / "homefs").glob("*"):
            if os.path.ismount(home):
                release_home(home)
        shutil.rmtree(root, ignore_errors=True)


def _size_mib(home: Path) -> float:
    st = os.statvfs(home)
    return st.f_blocks * st.f_frsize / (1 << 20)


def _fill(home: Path, mib: int) -> int:
    """Write up to ``mib`` MiB; the errno that stopped it (0: all written)."""
    chunk = b"\0" * (1 << 20)
    try:
        with open(home / "fill", "wb") as f:
            for _ in range(mib):
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_a_home_is_its_own_file_system(homes: Path) -> None:
    home = homes / "42-fs"
    ensure_home(home, 16)
    assert os.path.ismount(home)
    options = next(
        line.split()[5] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == str(home)
    )  # fmt: skip
    assert {"nosuid", "nodev"} <= set(options.split(","))
    assert 12 < _size_mib(home) <= 16
    assert oct(home_image(home).parent.stat().st_mode & 0o777) == "0o700"
    ensure_home(home, 16)  # idempotent: already mounted
    assert _fill(home, 32) == errno.ENOSPC
    assert (home / "fill").stat().st_size <= 16 << 20
    (home / "fill").unlink()
    (home / "thesis.odt").write_text("years of work")
    release_home(home)
    assert not os.path.ismount(home)
    assert not (home / "thesis.odt").exists()  # it lives in the image, not on the node's disk

    ensure_home(home, 48)  # grown while unmounted, files kept
    assert (home / "thesis.odt").read_text() == "years of work"
    assert 40 < _size_mib(home) <= 48
    release_home(home)
    ensure_home(home, 8)  # never shrunk
    assert 40 < _size_mib(home) <= 48
    release_home(home)


def test_a_zero_quota_is_refused(homes: Path) -> None:
    with pytest.raises(HomeError, match="must be positive"):
        ensure_home(homes / "x", 0)
