"""Packing and unpacking images (real tar and zstd), ``.tar.gz`` images of old."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from qvd.di import DiError, unpack_image
from qvd.di.archive import pack_tree


def make_tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("qvd\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_text("#!/bin/sh\n")
    (root / "bin/tool").chmod(0o755)
    (root / "bin/link").symlink_to("tool")
    os.chown(root / "etc/hostname", 12345, 54321)


@pytest.mark.usefixtures("root_only")  # numeric owners: chown
def test_pack_and_unpack_round_trip(tmp_path: Path) -> None:
    make_tree(tmp_path / "root")
    image = tmp_path / "img.tar.zst"
    fractions: list[float] = []
    with open(tmp_path / "log", "w") as log:
        pack_tree(tmp_path / "root", image, step="pack", log=log, on_fraction=fractions.append)
    assert image.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd magic
    out = tmp_path / "out"
    unpack_image(image, out)
    assert (out / "etc/hostname").read_text() == "qvd\n"
    assert (out / "etc/hostname").stat().st_uid == 12345  # numeric owners kept
    assert os.readlink(out / "bin/link") == "tool"
    assert (out / "bin/tool").stat().st_mode & 0o777 == 0o755


def test_tar_gz_images_are_accepted(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("./etc/os-release")
        data = b"ID=debian\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    image = tmp_path / "legacy.tar.gz"
    image.write_bytes(gzip.compress(buffer.getvalue()))
    unpack_image(image, tmp_path / "out")
    assert (tmp_path / "out/etc/os-release").read_text() == "ID=debian\n"
    with pytest.raises(DiError, match="not an image file"):
        unpack_image(tmp_path / "disk.qcow2", tmp_path / "x")
