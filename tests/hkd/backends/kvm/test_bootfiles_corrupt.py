"""Robustness of the boot-file extraction against a DI whose ext4 metadata is corrupted
on purpose, so the node's file-system reader misbehaves: follows a lying inode out of
its bounds, loops, writes where it should not or leaves files behind. Mounting it
would hand the lie to the node's kernel; ``boot_files`` reads it with debugfs in
userspace, as ``nobody``, under memory, CPU-time and output-size bounds, then checks
what came out.

Seeded corruptions (the same on every run) of the superblock, the group descriptors,
the inode records of the boot path and the directory blocks of ``/boot`` and
``/boot/qvd`` of a real ``mkfs.ext4 -d`` file system: each either gives boot files
that pass every rule or is refused with a reason, and nothing is left outside
finished cache entries."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest

from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.kvm.bootfiles import INITRD_MAX, KERNEL_MAX, boot_files
from tests.hkd.backends.kvm.test_bootfiles import boot_tree, no_leftovers

BLOCK = 4096
INODE = 256
BOOT = ("/boot", "/boot/qvd", "/boot/qvd/vmlinuz", "/boot/qvd/initrd.img", "/boot/qvd/cmdline")


def _debugfs(raw: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(raw)], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip


def regions(raw: Path) -> dict[str, list[tuple[int, int]]]:
    """Byte ranges worth corrupting: the superblock, the group descriptors, the inode
    records of the boot path, the directory blocks of /boot and /boot/qvd."""
    inodes, dirs = [], []
    for path in BOOT:
        located = re.search(r"located at block (\d+), offset 0x([0-9a-f]+)",
                            _debugfs(raw, f"imap {path}"))  # fmt: skip
        assert located is not None
        start = int(located.group(1)) * BLOCK + int(located.group(2), 16)
        inodes.append((start, start + INODE))
    for path in BOOT[:2]:
        for block in _debugfs(raw, f"blocks {path}").split():
            dirs.append((int(block) * BLOCK, (int(block) + 1) * BLOCK))
    return {
        "superblock": [(1024, 2048)],
        "group descriptors": [(BLOCK, 2 * BLOCK)],
        "boot inodes": inodes,
        "boot directories": dirs,
    }


def corrupted(tmp: Path, raw: Path, ranges: list[tuple[int, int]], seed: int) -> Path:
    data = bytearray(raw.read_bytes())
    rng = random.Random(seed)
    for _ in range(12):
        start, end = rng.choice(ranges)
        data[rng.randrange(start, end)] = rng.randrange(256)
    bad = tmp / "bad.raw"
    bad.write_bytes(bytes(data))
    image = tmp / f"1{seed:04d}-corrupt.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(bad), str(image)],
                   check=True)  # fmt: skip
    bad.unlink()
    return image


@pytest.fixture(scope="module")
def clean_raw(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, list[tuple[int, int]]]]:
    tmp = tmp_path_factory.mktemp("ext4")
    root = boot_tree(tmp / "root")
    raw = tmp / "fs.raw"
    subprocess.run(["truncate", "-s", "16M", str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-b", str(BLOCK), "-I", str(INODE), "-L", "qvdroot",
                    "-d", str(root), str(raw)], check=True)  # fmt: skip
    return raw, regions(raw)


REGIONS = ["superblock", "group descriptors", "boot inodes", "boot directories"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("region", REGIONS)
def test_a_corrupted_file_system_is_read_safely(
    tmp_path: Path,
    clean_raw: tuple[Path, dict[str, list[tuple[int, int]]]],
    region: str,
    seed: int,
) -> None:
    raw, ranges = clean_raw
    image = corrupted(tmp_path, raw, ranges[region], seed)
    cache = tmp_path / "cache"
    before = set(tmp_path.rglob("*"))
    refusal = ""
    try:
        files = boot_files(image, cache)
    except TerminalBackendError as exc:
        refusal = str(exc)
    if refusal:
        print(f"refused: {refusal}")
        assert refusal.startswith(f"{image.name}: ")
    else:
        print("read")
        assert files.kernel.stat().st_size <= KERNEL_MAX
        assert files.initrd.stat().st_size <= INITRD_MAX
        assert files.kernel.read_bytes()[0x202:0x206] == b"HdrS"
    no_leftovers(cache)
    made = {p for p in set(tmp_path.rglob("*")) - before if cache not in p.parents}
    assert made <= {cache}
