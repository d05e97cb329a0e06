"""Boot files out of a KVM DI: real ext4 file systems made with ``mkfs.ext4 -d`` (no
mount) holding ``/boot/qvd/*``, converted to qcow2 by the real ``qemu-img``, read back
with the module's qemu-img + debugfs path. Good, missing, linked, oversized and
hostile layouts; the command-line allow list; the per-DI cache and its lock."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.kvm.bootfiles import (
    BootFiles,
    boot_files,
    check_cmdline,
    prune_boot_files,
)

CMDLINE = "root=LABEL=qvdroot rw console=ttyS0 quiet"


def fake_kernel(size: int = 8192, *, marker: bytes = b"k") -> bytes:
    """Bytes with a bzImage setup header magic (QEMU is never run on them here)."""
    data = bytearray(marker * size)[:size]
    data[0x202:0x206] = b"HdrS"
    return bytes(data)


def boot_tree(
    root: Path,
    *,
    kernel: bytes | None = None,
    initrd: bytes | None = b"initrd-bytes" * 1000,
    cmdline: bytes | None = (CMDLINE + "\n").encode(),
) -> Path:
    boot = root / "boot" / "qvd"
    boot.mkdir(parents=True, exist_ok=True)
    for name, data in (("vmlinuz", kernel or fake_kernel()), ("initrd.img", initrd),
                       ("cmdline", cmdline)):  # fmt: skip
        if data is not None:
            (boot / name).write_bytes(data)
    return root


def make_di(tmp: Path, root: Path, name: str = "10001-desk.qcow2", size: str = "32M") -> Path:
    """A qcow2 whose whole disk is one ext4 (label qvdroot) made from ``root``."""
    raw = tmp / f"{name}.raw"
    subprocess.run(["truncate", "-s", size, str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "qvdroot", "-d", str(root), str(raw)],
                   check=True)  # fmt: skip
    image = tmp / name
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)],
                   check=True)  # fmt: skip
    raw.unlink()
    return image


def no_leftovers(cache: Path) -> None:
    """Only finished entries and lock files stay in the cache."""
    names = [p.name for p in cache.iterdir()] if cache.exists() else []
    assert [n for n in names if n.startswith(".")] == []


def test_the_boot_files_come_out_private_and_cached(tmp_path: Path) -> None:
    kernel = fake_kernel(3 << 20)
    initrd = os.urandom(1 << 20)
    image = make_di(tmp_path, boot_tree(tmp_path / "root", kernel=kernel, initrd=initrd))
    cache = tmp_path / "cache"
    files = boot_files(image, cache)
    assert files.kernel.read_bytes() == kernel
    assert files.initrd.read_bytes() == initrd
    assert files.cmdline == CMDLINE
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(files.kernel.parent.stat().st_mode) == 0o700
    for path in (files.kernel, files.initrd, files.kernel.parent / "cmdline"):
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, os.geteuid())
    no_leftovers(cache)
    # again: the same files, not extracted anew
    before = files.kernel.stat().st_ino
    assert boot_files(image, cache) == files
    assert files.kernel.stat().st_ino == before


def test_a_replaced_image_is_extracted_anew(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    image = make_di(tmp_path, boot_tree(tmp_path / "a", kernel=fake_kernel(marker=b"a")))
    first = boot_files(image, cache)
    (tmp_path / "out").mkdir()
    tree = boot_tree(tmp_path / "b", kernel=fake_kernel(marker=b"b"))
    replacement = make_di(tmp_path / "out", tree)
    os.replace(replacement, image)
    second = boot_files(image, cache)
    assert second.kernel != first.kernel
    assert second.kernel.read_bytes() == fake_kernel(marker=b"b")


def test_starts_at_once_share_one_extraction(tmp_path: Path) -> None:
    image = make_di(tmp_path, boot_tree(tmp_path / "root"))
    cache = tmp_path / "cache"
    results: list[BootFiles] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(boot_files(image, cache))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(results) == 4
    assert len(set(results)) == 1
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert entries == [results[0].kernel.parent]
    no_leftovers(cache)


@pytest.mark.parametrize("missing", ["vmlinuz", "initrd.img", "cmdline"])
def test_a_missing_boot_file_is_refused(tmp_path: Path, missing: str) -> None:
    root = boot_tree(tmp_path / "root")
    (root / "boot" / "qvd" / missing).unlink()
    cache = tmp_path / "cache"
    with pytest.raises(TerminalBackendError, match=f"/boot/qvd/{missing} is missing"):
        boot_files(make_di(tmp_path, root), cache)
    no_leftovers(cache)
    assert [p for p in cache.iterdir() if p.is_dir()] == []


def test_links_and_special_files_are_refused(tmp_path: Path) -> None:
    root = boot_tree(tmp_path / "root")
    boot = root / "boot" / "qvd"
    (boot / "initrd.img").unlink()
    (boot / "initrd.img").symlink_to("vmlinuz")  # even a link inside the image
    with pytest.raises(TerminalBackendError, match=r"initrd.img is a symlink, not a regular"):
        boot_files(make_di(tmp_path, root), tmp_path / "cache")
    (boot / "initrd.img").unlink()
    os.mkfifo(boot / "initrd.img")
    with pytest.raises(TerminalBackendError, match=r"initrd.img is a FIFO, not a regular"):
        boot_files(make_di(tmp_path, root, "10002-fifo.qcow2"), tmp_path / "cache")
    (boot / "initrd.img").unlink()
    (boot / "initrd.img").mkdir()
    with pytest.raises(TerminalBackendError, match=r"initrd.img is a directory"):
        boot_files(make_di(tmp_path, root, "10003-dir.qcow2"), tmp_path / "cache")
    no_leftovers(tmp_path / "cache")


def test_an_oversized_boot_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    root = boot_tree(tmp_path / "root")
    kernel = root / "boot" / "qvd" / "vmlinuz"
    with open(kernel, "r+b") as f:
        f.truncate((64 << 20) + 1)  # sparse: the image stays small
    image = make_di(tmp_path, root, size="80M")
    with pytest.raises(TerminalBackendError, match=r"vmlinuz is 67108865 bytes, over the limit"):
        boot_files(image, tmp_path / "cache")
    no_leftovers(tmp_path / "cache")


def test_a_file_that_is_no_kernel_is_refused(tmp_path: Path) -> None:
    root = boot_tree(tmp_path / "root")
    (root / "boot" / "qvd" / "vmlinuz").write_bytes(b"#!/bin/sh\nrm -rf /\n")
    with pytest.raises(TerminalBackendError, match="not a Linux kernel"):
        boot_files(make_di(tmp_path, root), tmp_path / "cache")
    no_leftovers(tmp_path / "cache")


def test_an_elf_kernel_is_accepted(tmp_path: Path) -> None:
    root = boot_tree(tmp_path / "root", kernel=b"\x7fELF" + b"\0" * 4092)
    assert boot_files(make_di(tmp_path, root), tmp_path / "cache").kernel.read_bytes()[:4] == (
        b"\x7fELF"
    )


def test_a_bad_cmdline_in_the_image_is_refused(tmp_path: Path) -> None:
    root = boot_tree(tmp_path / "root", cmdline=b"root=/dev/vda rw init=/bin/sh\n")
    with pytest.raises(TerminalBackendError, match=r"10001-desk.qcow2: .*'init'= is not allowed"):
        boot_files(make_di(tmp_path, root), tmp_path / "cache")
    no_leftovers(tmp_path / "cache")


def test_a_disk_without_ext4_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "10001-blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    with pytest.raises(TerminalBackendError, match="not an ext4 file system"):
        boot_files(image, tmp_path / "cache")
    no_leftovers(tmp_path / "cache")


def test_an_image_that_is_no_qcow2_or_is_a_link_is_refused(tmp_path: Path) -> None:
    tarball = tmp_path / "10001-desk.tar"
    tarball.write_bytes(b"\0" * 10240)
    with pytest.raises(TerminalBackendError, match="not a qcow2 image"):
        boot_files(tarball, tmp_path / "cache")
    link = tmp_path / "10002-link.qcow2"
    link.symlink_to(make_di(tmp_path, boot_tree(tmp_path / "root")))
    with pytest.raises(TerminalBackendError, match="cannot open the DI"):
        boot_files(link, tmp_path / "cache")


@pytest.mark.parametrize(
    "line",
    [
        "root=LABEL=qvdroot rw console=ttyS0 quiet",
        "root=/dev/vda ro console=ttyS0,115200 loglevel=3 net.ifnames=0",
        "root=LABEL=qvdroot rw systemd.show_status=false systemd.log_level=warning",
    ],
)
def test_the_cmdline_allow_list_takes_plain_boot_words(line: str) -> None:
    assert check_cmdline((line + "\n").encode()) == line


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"root=/dev/vda init=/bin/sh", "'init'= is not allowed"),
        (b"root=/dev/vda rdinit=/x", "'rdinit'= is not allowed"),
        (b"root=/dev/vda systemd.unit=rescue.target", "'systemd.unit'= is not allowed"),
        (b"root=/dev/vda single", "'single' is not allowed"),
        (b"root=/dev/vda virtio_blk.foo=1", "'virtio_blk.foo'= is not allowed"),
        (b"root=/dev/vda console=tty$(id)", "not plain"),
        (b"root=/dev/vda console=", "not plain"),
        (b"root=/dev/vda\nrw", "one line"),
        (b"root=/dev/vda\trw", "one line"),
        ("root=/dev/vd\u00e4".encode(), "one line"),
        (b"root=/dev/vda  rw", "single spaces"),
        (b"", "single spaces"),
        (b"rw " * 400, "longer than 1024"),
    ],
)
def test_the_cmdline_allow_list_refuses_the_rest(raw: bytes, needle: str) -> None:
    with pytest.raises(TerminalBackendError, match="/boot/qvd/cmdline") as caught:
        check_cmdline(raw)
    assert needle in str(caught.value)


def test_prune_keeps_what_is_wanted_and_what_is_being_made(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    kept = make_di(tmp_path / "a", boot_tree(tmp_path / "ra"), "10001-kept.qcow2")
    gone = make_di(tmp_path / "b", boot_tree(tmp_path / "rb", kernel=fake_kernel(marker=b"g")),
                   "10002-gone.qcow2")  # fmt: skip
    kept_files, gone_files = boot_files(kept, cache), boot_files(gone, cache)
    busy = gone_files.kernel.parent
    lock = cache / f"{busy.name}.lock"
    dead = cache / ".extract-died"  # what an extraction killed midway leaves
    dead.mkdir()
    other = cache / "notes.txt"  # not a cache entry: never touched
    other.write_text("x")
    holder = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # an extraction of that key runs now
        assert prune_boot_files(cache, [kept]) == []
        assert busy.is_dir()
    finally:
        os.close(holder)
    assert prune_boot_files(cache, [kept]) == [busy]
    assert not busy.exists()
    assert not lock.exists()
    assert dead.exists()  # within the grace period
    assert prune_boot_files(cache, [kept], grace=0) == [dead]
    assert kept_files.kernel.read_bytes() == fake_kernel()
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [kept_files.kernel.parent.name, f"{kept_files.kernel.parent.name}.lock", "notes.txt"]
    )
    assert boot_files(gone, cache).kernel.read_bytes() == fake_kernel(marker=b"g")
