"""Disk benchmark: per-home file systems (home quotas) and the checked image unpack.

Homes: for N homes of 1 GiB, the time to create one (sparse image + mkfs.ext4), to
mount it, to unmount it, and to grow it to 2 GiB (offline) and mount it (p50, ms).
Unpack: the one-pass checked unpack (``qvd.imagefile.unpack_checked``) of the cached
``tiny`` test image
when it is there (seconds, MB/s of member data). Everything lives in a scratch
directory removed at the end. Run as root:

    .venv/bin/python bench/disk.py [--quick]

The last line printed is ``home_create_ms=… home_mount_ms=… home_grow_ms=…
home_umount_ms=… unpack_s=… unpack_mb_s=…``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchkit import scratch_dir
from qvd.hkd.backends.homefs import ensure_home, release_home
from qvd.imagefile import unpack_checked

IMAGES = Path("/var/cache/qvd/di")


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.1f}"


def homes(root: Path, count: int) -> dict[str, str]:
    create, mount, grow, umount = [], [], [], []
    for i in range(count):
        home = root / "homefs" / f"{i}-fs"
        t0 = time.perf_counter()
        ensure_home(home, 1024)
        t1 = time.perf_counter()
        release_home(home)
        t2 = time.perf_counter()
        ensure_home(home, 1024)  # image exists: mount only
        t3 = time.perf_counter()
        release_home(home)
        t4 = time.perf_counter()
        ensure_home(home, 2048)  # grown (offline), then mounted
        t5 = time.perf_counter()
        release_home(home)
        create.append((t1 - t0) - 0)  # includes the first mount
        mount.append(t3 - t2)
        umount.append(t4 - t3)
        grow.append(t5 - t4)  # grow and mount
    create = [c - m for c, m in zip(create, mount, strict=True)]  # creation alone
    return {"home_create_ms": _ms(create), "home_mount_ms": _ms(mount),
            "home_grow_ms": _ms(grow), "home_umount_ms": _ms(umount)}  # fmt: skip


def unpack(root: Path) -> dict[str, str]:
    images = sorted(IMAGES.glob("tiny-*.tar.zst"))
    if not images:
        return {"unpack_s": "nan", "unpack_mb_s": "nan"}
    dest = root / "unpacked"
    dest.mkdir()
    t0 = time.perf_counter()
    report = unpack_checked(images[-1], dest)
    took = time.perf_counter() - t0
    return {"unpack_s": f"{took:.2f}", "unpack_mb_s": f"{report.bytes / took / 1e6:.0f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 homes instead of 10")
    args = parser.parse_args()
    with scratch_dir("qvd-bench-disk-") as root:
        try:
            figures = homes(root, 3 if args.quick else 10)
            figures |= unpack(root)
        finally:
            for home in (root / "homefs").glob("*-fs"):
                release_home(home)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
