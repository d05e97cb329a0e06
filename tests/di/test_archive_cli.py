"""Packing and unpacking images (real tar and zstd), tool failures, and ``qvd di``."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qvd.di import BuildError, DiError, load_recipe, unpack_image
from qvd.di.archive import pack_tree
from qvd.di.build import image_path
from qvd.di.cli import app
from qvd.di.commands import run_tool


def make_tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("qvd\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_text("#!/bin/sh\n")
    (root / "bin/tool").chmod(0o755)
    (root / "bin/link").symlink_to("tool")
    os.chown(root / "etc/hostname", 12345, 54321)


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


def test_a_failing_tool_names_the_step_and_shows_its_output(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as log, pytest.raises(BuildError) as failed:
        run_tool(
            ["sh", "-c", "echo fetching; echo 'E: no such package' >&2; exit 3"],
            step="bootstrap",
            log=log,
        )
    assert failed.value.step == "bootstrap"
    assert "status 3" in failed.value.reason
    assert "E: no such package" in failed.value.log_tail
    assert "fetching" in (tmp_path / "log").read_text()
    with open(tmp_path / "log", "w") as log, pytest.raises(BuildError, match="cannot run"):
        run_tool(["/nonexistent/tool"], step="pack", log=log)


def test_cli_lists_recipes_and_reports_missing_images(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["recipes", "--cache", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "test" in listed.output
    assert "not built" in listed.output
    missing = runner.invoke(app, ["info", "test", "--cache", str(tmp_path)])
    assert missing.exit_code == 1
    assert "qvd di build test" in missing.output
    unknown = runner.invoke(app, ["build", "nope", "--cache", str(tmp_path)])
    assert unknown.exit_code == 1
    assert "no recipe named 'nope'" in unknown.output
    assert image_path(tmp_path, load_recipe("test")).parent == tmp_path
