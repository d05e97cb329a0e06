"""Unpacking a checked image with GNU tar: numeric owners, extended attributes, and
nothing under ``dev/``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from qvd.imagefile.tarcheck import ImageRejected, TarReport, check_tar, decompressor_for

__all__ = ["unpack_checked"]


def unpack_checked(image: Path, dest: Path) -> TarReport:
    """Check every member of ``image``, then unpack it into ``dest`` (which must exist
    and be empty). Raises ImageRejected before writing anything if a member is unsafe."""
    report = check_tar(image)
    command = decompressor_for(image)
    argv = [
        *("tar", "-x", "-C", str(dest), "--numeric-owner", "--same-permissions"),
        *("--same-owner", "--xattrs", "--xattrs-include=*"),
        *("--exclude=./dev/*", "--exclude=dev/*", "-f", "-"),
    ]
    with open(image, "rb") as source:
        if command is None:
            done = subprocess.run(argv, stdin=source, capture_output=True, check=False)
        else:
            decomp = subprocess.Popen(command, stdin=source, stdout=subprocess.PIPE)
            done = subprocess.run(argv, stdin=decomp.stdout, capture_output=True, check=False)
            assert decomp.stdout is not None
            decomp.stdout.close()
            decomp.wait()
    if done.returncode != 0:
        raise ImageRejected(
            f"{image.name}: unpacking failed: {done.stderr.decode(errors='replace').strip()}"
        )
    return report
