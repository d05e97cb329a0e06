"""Attack (issue #13, KVM DIs): a DI that expands when the node reads it. A tenant
administrator uploads a small qcow2 whose clusters are compressed (or repeated): 300 MiB
of one byte take a few hundred KiB. The node takes the boot files out by converting
the disk to a sparse raw file; zero blocks stay holes, but these are data, so without a
check the conversion writes all of it and fills the node's disk (the virtual size, up
to ``di.unpack.max_bytes``, is the only other bound).

Now ``boot_files`` counts the data the disk holds (``qemu-img map``) before converting
and refuses, with a retryable error, a disk that would not fit in the free space of
the cache's file system (less a margin). Against a 64 MiB tmpfs of the test's own."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.hkd.backends.base import BackendError, TerminalBackendError
from qvd.hkd.backends.kvm.bootfiles import boot_files
from tests.hkd.backends.kvm.test_bootfiles import boot_tree, no_leftovers


@pytest.fixture
def small_disk(tmp_path: Path, root_only: None) -> Iterator[Path]:
    """A 64 MiB tmpfs of this test's own (unmounted at the end, even on failure)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "qvd-test-small",
                    str(mount)], check=True)  # fmt: skip
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_an_expanding_image_is_refused_before_it_fills_the_disk(
    tmp_path: Path, small_disk: Path
) -> None:
    """300 MiB of one repeated byte, compressed to a few hundred KiB of qcow2: the
    extraction counts the data first and stops before it writes a byte of it."""
    root = boot_tree(tmp_path / "root")
    with open(root / "filler", "wb") as f:
        for _ in range(300):
            f.write(b"\x01" * (1 << 20))
    raw = tmp_path / "bomb.raw"
    subprocess.run(["truncate", "-s", "400M", str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "qvdroot", "-d", str(root), str(raw)], check=True)
    (root / "filler").unlink()
    image = tmp_path / "10009-bomb.qcow2"
    subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw),
                    str(image)], check=True)  # fmt: skip
    raw.unlink()
    assert image.stat().st_size < 8 << 20
    cache = small_disk / "cache"
    with pytest.raises(BackendError, match=r"bytes of data, more than the \d+ bytes free") as err:
        boot_files(image, cache)
    assert not isinstance(err.value, TerminalBackendError)  # room may come back: retry
    no_leftovers(cache)
    assert shutil.disk_usage(small_disk).used < 1 << 20
