"""KVM DI benchmark: the header check and the boot-file extraction of a qcow2 DI.

A DI is made like the KVM image layout says (one ext4, label ``qvdroot``, no partition
table) from a cached LXC test image's root (``tiny`` with ``--quick``, ``desktop``
otherwise: a real file system of realistic size) plus ``/boot/qvd/`` files of a real
kernel's and a small initrd's sizes (random bytes: nothing boots here). Then, per run:
``check_qcow2`` of the header (p50 ms), the first ``boot_files`` (count the data with
``qemu-img map``, convert to a sparse raw disk, stat and dump with debugfs, copy out;
p50 ms over fresh caches) and a cached ``boot_files`` (p50 ms). Everything lives in a
scratch directory removed at the end. Run as root:

    .venv/bin/python bench/bootfiles.py [--quick]

The last line printed is ``image=… data_mb=… qcow2_mb=… check_ms=… extract_ms=…
cached_ms=…``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchkit import exit_on_sigterm, scratch_dir
from qvd.hkd.backends.kvm.bootfiles import boot_files
from qvd.imagefile import check_qcow2

IMAGES = Path("/var/cache/qvd/di")
KERNEL_BYTES = 8 << 20  # Debian 6.1's vmlinuz is ~7.9 MB
INITRD_BYTES = 7 << 20  # a MODULES=list initrd is ~6.5 MB


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.1f}"


def _tarball(name: str) -> Path:
    found = sorted(IMAGES.glob(f"{name}-*.tar.zst"))
    if not found:
        sys.exit(f"no cached {name} image in {IMAGES}: run the tests that build it first")
    return found[-1]


def make_di(root: Path, source: Path) -> tuple[Path, int]:
    """The DI (qcow2) and the bytes of data its file system holds."""
    tree = root / "tree"
    tree.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(source), "-C", str(tree)], check=True)
    boot = tree / "boot" / "qvd"
    boot.mkdir(parents=True, exist_ok=True)
    kernel = bytearray(os.urandom(KERNEL_BYTES))
    kernel[0x202:0x206] = b"HdrS"
    (boot / "vmlinuz").write_bytes(bytes(kernel))
    (boot / "initrd.img").write_bytes(os.urandom(INITRD_BYTES))
    (boot / "cmdline").write_text("root=LABEL=qvdroot rw console=ttyS0 quiet\n")
    used = int(subprocess.run(["du", "-sb", str(tree)], check=True, capture_output=True,
                              text=True).stdout.split()[0])  # fmt: skip
    raw = root / "disk.raw"
    size = max(used * 2, 256 << 20)
    subprocess.run(["truncate", "-s", str(size), str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "qvdroot", "-d", str(tree), str(raw)], check=True)
    shutil.rmtree(tree)
    image = root / "10001-bench.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)],
                   check=True)  # fmt: skip
    raw.unlink()
    return image, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny image, 3 runs")
    args = parser.parse_args()
    exit_on_sigterm()
    name, runs = ("tiny", 3) if args.quick else ("desktop", 5)
    with scratch_dir("qvd-bench-bootfiles-") as root:
        image, used = make_di(root, _tarball(name))
        check, extract, cached = [], [], []
        for run in range(runs):
            t0 = time.perf_counter()
            info = check_qcow2(image, max_virtual_bytes=1 << 40)
            check.append(time.perf_counter() - t0)
            cache = root / f"cache-{run}"
            t0 = time.perf_counter()
            files = boot_files(image, cache)
            extract.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert boot_files(image, cache) == files
            cached.append(time.perf_counter() - t0)
            shutil.rmtree(cache)
        qcow2_mb = image.stat().st_size >> 20
        print(f"image: {name}, virtual {info.virtual_size >> 20} MiB, "
              f"file system data {used >> 20} MiB, qcow2 {qcow2_mb} MiB")  # fmt: skip
        print(
            f"image={name} data_mb={used >> 20} qcow2_mb={qcow2_mb} "
            f"check_ms={_ms(check)} extract_ms={_ms(extract)} cached_ms={_ms(cached)}"
        )


if __name__ == "__main__":
    main()
