"""Packing a root file system into an image file, and unpacking image files.

LXC images are tarballs of the root (numeric owners, extended attributes kept). We
write ``.tar.zst``; unpacking also accepts ``.tar.gz``/``.tgz`` and ``.tar.xz``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from qvd.di.commands import run_tool
from qvd.di.errors import BuildError, DiError
from qvd.di.progress import TarMeter

__all__ = ["IMAGE_SUFFIXES", "compressor_for", "pack_tree", "tree_bytes", "unpack_image"]

IMAGE_SUFFIXES = (".tar.zst", ".tar.gz", ".tgz", ".tar.xz")
_CHECKPOINT = 500


def compressor_for(path: Path) -> str:
    """The ``tar -I`` program for an image file name."""
    name = path.name
    if name.endswith(".tar.zst"):
        return "zstd -T0"
    if name.endswith((".tar.gz", ".tgz")):
        return "gzip"
    if name.endswith(".tar.xz"):
        return "xz -T0"
    raise DiError(f"{path}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")


def tree_bytes(root: Path) -> int:
    """Apparent size of the files under ``root`` (no symlink following)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total


def pack_tree(
    root: Path,
    dest: Path,
    *,
    step: str,
    log: TextIO,
    on_fraction: Callable[[float], None] | None = None,
) -> None:
    """Write ``root`` as a zstd-compressed tarball at ``dest`` (atomically, via a temp name)."""
    if not dest.name.endswith(".tar.zst"):
        raise BuildError(step, f"images are written as .tar.zst, not {dest.name}")
    meter = TarMeter(tree_bytes(root), _CHECKPOINT)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")

    def seen(line: str) -> None:
        fraction = meter.feed(line)
        if fraction is not None and on_fraction is not None:
            on_fraction(fraction)

    try:
        run_tool(
            [
                "tar",
                "-C",
                str(root),
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                f"--checkpoint={_CHECKPOINT}",
                "--checkpoint-action=echo=ckpt %u",
                "-I",
                "zstd -3 -T0 -q",
                "-cf",
                str(tmp),
                ".",
            ],
            step=step,
            log=log,
            on_line=seen,
        )
        tmp.rename(dest)
    finally:
        tmp.unlink(missing_ok=True)


def unpack_image(image: Path, dest: Path, *, log: TextIO | None = None) -> None:
    """Unpack an image file into the (empty or new) directory ``dest``."""
    program = compressor_for(image)
    if not image.is_file():
        raise DiError(f"{image}: no such image file")
    dest.mkdir(parents=True, exist_ok=True)
    argv = [
        "tar",
        "-C",
        str(dest),
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "-I",
        program,
        "-xpf",
        str(image),
    ]
    if log is not None:
        run_tool(argv, step="unpack", log=log)
        return
    with open(os.devnull, "w", encoding="utf-8") as sink:
        run_tool(argv, step="unpack", log=sink)
