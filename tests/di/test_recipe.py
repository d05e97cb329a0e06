"""Recipes: the shipped ones load, invalid ones are refused, hashes move as they should."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import qvd
from qvd.di import RecipeError, base_hash, load_recipe, recipe_hash, recipe_names
from qvd.di.recipe import parse_recipe

MINIMAL = 'name = "x"\ndescription = "d"\nsuite = "bookworm"\nvariant = "minbase"\n'


def test_shipped_recipes() -> None:
    assert recipe_names() == ["desktop", "test", "tiny"]
    test = load_recipe("test")
    assert {"nxagent", "xfonts-base", "xkb-data", "xauth", "x11-xserver-utils", "python3"} <= set(
        test.packages
    )
    assert "xterm" in test.packages
    desktop = load_recipe("desktop")
    assert "xfce4-session" in desktop.extra_packages
    assert dict(desktop.vma_conf)["command.x-session"] == "startxfce4"


def test_hashes() -> None:
    test = load_recipe("test")
    assert recipe_hash(test) == recipe_hash(load_recipe("test"))
    assert recipe_hash(test) != recipe_hash(load_recipe("desktop"))
    other_conf = dataclasses.replace(test, vma_conf=(("command.x-session", "xclock"),))
    assert recipe_hash(other_conf) != recipe_hash(test)
    assert base_hash(other_conf) == base_hash(test)  # the OS stage is reused
    more = dataclasses.replace(test, packages=(*test.packages, "x11-apps"))
    assert base_hash(more) != base_hash(test)


def _hashes_of_a_copy(tmp_path: Path, edit: str | None) -> tuple[str, str]:
    """base_hash and recipe_hash of the ``test`` recipe, computed by a copy of the
    installed package in which one module got a trailing comment."""
    copy = tmp_path / (edit or "unchanged")
    shutil.copytree(Path(qvd.__file__).parent, copy / "qvd",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    if edit is not None:
        with (copy / "qvd" / edit).open("a", encoding="utf-8") as fh:
            fh.write("# an edit\n")
    code = (
        "import json; from qvd.di import base_hash, recipe_hash, load_recipe; "
        "r = load_recipe('test'); print(json.dumps([base_hash(r), recipe_hash(r)]))"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert str(copy) in subprocess.run(
        [sys.executable, "-c", "import qvd; print(qvd.__file__)"], env=env, capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    base, whole = json.loads(done.stdout)
    return str(base), str(whole)


def test_a_changed_builder_changes_the_hashes(tmp_path: Path) -> None:
    """A warm cache must not hide a change to the code that builds images: the image
    stage's code moves the image hash, the OS stage's code moves both."""
    base, whole = _hashes_of_a_copy(tmp_path, None)
    assert _hashes_of_a_copy(tmp_path, "di/progress.py") == (base, whole)  # no effect on images
    build_base, build_whole = _hashes_of_a_copy(tmp_path, "di/build.py")
    assert build_base == base
    assert build_whole != whole
    stage_base, stage_whole = _hashes_of_a_copy(tmp_path, "di/osstage.py")
    assert stage_base != base
    assert stage_whole not in (whole, build_whole)
    vma_base, vma_whole = _hashes_of_a_copy(tmp_path, "vma/server.py")
    assert vma_base == base
    assert vma_whole != whole


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL + 'packages = ["python3"]\nfoo = 1\n', "unknown keys"),
        (MINIMAL + 'packages = ["xterm"]\n', "python3"),
        (MINIMAL + 'packages = ["python3", "bad name"]\n', "bad package"),
        (MINIMAL.replace("bookworm", "sid") + 'packages = ["python3"]\n', "suite"),
        (MINIMAL + 'packages = ["python3"]\nremove = ["../etc"]\n', "relative"),
        (MINIMAL + "packages = [", "recipes/x"),
    ],
)
def test_invalid_recipes(text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe(text, source="recipes/x.toml")


def test_unknown_recipe_names_the_known_ones() -> None:
    with pytest.raises(RecipeError, match="desktop, test"):
        load_recipe("nope")
