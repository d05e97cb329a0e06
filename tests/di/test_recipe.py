"""Recipes: the shipped ones load, invalid ones are refused, hashes move as they should."""

from __future__ import annotations

import dataclasses

import pytest

from qvd.di import RecipeError, base_hash, load_recipe, recipe_hash, recipe_names
from qvd.di.recipe import parse_recipe

MINIMAL = 'name = "x"\ndescription = "d"\nsuite = "bookworm"\nvariant = "minbase"\n'


def test_shipped_recipes() -> None:
    assert recipe_names() == ["desktop", "test"]
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
