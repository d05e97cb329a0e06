"""``qvd di`` (in process): recipes listed, missing images and unknown recipes reported.
A real build from the command line is in test_build.py."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from qvd.di import image_hash, load_recipe, output_format
from qvd.di.build import image_path
from qvd.di.cli import app


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


def test_cli_formats(tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["build", "test", "--format", "vmdk", "--cache", str(tmp_path)])
    assert unknown.exit_code == 1
    assert "unknown image format 'vmdk' (have: lxc-tar-zst, qcow2)" in unknown.output
    listed = runner.invoke(app, ["recipes", "--format", "qcow2", "--cache", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    test_line = next(line for line in listed.output.splitlines() if line.startswith("test "))
    assert image_hash(load_recipe("test"), output_format("qcow2")) in test_line
    assert image_hash(load_recipe("test")) not in test_line
    missing = runner.invoke(app, ["info", "test", "--format", "qcow2", "--cache", str(tmp_path)])
    assert missing.exit_code == 1
    assert "qvd di build test --format qcow2" in missing.output
    assert list(tmp_path.iterdir()) == []  # nothing was built
