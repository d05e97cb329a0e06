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
from qvd.di import (
    RecipeError,
    base_hash,
    image_hash,
    load_recipe,
    output_format,
    recipe_hash,
    recipe_names,
)
from qvd.di.recipe import parse_recipe
from qvd.di.vmstage import vm_stage_key

MINIMAL = 'name = "x"\ndescription = "d"\nsuite = "bookworm"\nvariant = "minbase"\n'


def test_shipped_recipes() -> None:
    assert recipe_names() == ["desktop", "test", "test-usb", "tiny"]
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


def _hashes_of_a_copy(tmp_path: Path, edit: str | None) -> dict[str, str]:
    """The hashes of the ``test`` recipe (OS stage, tarball, VM stage, qcow2) computed by
    a copy of the installed package in which one module got a trailing comment."""
    copy = tmp_path / (edit or "unchanged").replace("/", "-")
    shutil.copytree(Path(qvd.__file__).parent, copy / "qvd",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    if edit is not None:
        with (copy / "qvd" / edit).open("a", encoding="utf-8") as fh:
            fh.write("# an edit\n")
    code = (
        "import json; from qvd.di import base_hash, image_hash, load_recipe, output_format; "
        "from qvd.di.vmstage import vm_stage_key; r = load_recipe('test'); "
        "print(json.dumps({'base': base_hash(r), 'tar': image_hash(r), "
        "'vm': vm_stage_key(r), 'qcow2': image_hash(r, output_format('qcow2'))}))"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert str(copy) in subprocess.run(
        [sys.executable, "-c", "import qvd; print(qvd.__file__)"], env=env, capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    hashes = json.loads(done.stdout)
    assert isinstance(hashes, dict)
    return {str(k): str(v) for k, v in hashes.items()}


def test_a_changed_builder_changes_the_hashes(tmp_path: Path) -> None:
    """A warm cache must not hide a change to the code that builds images: the image
    stage's code moves the image hash, the OS stage's code moves both; the KVM image's
    own modules move the KVM image only, never the LXC tarball of the same recipe."""
    same = _hashes_of_a_copy(tmp_path, None)
    assert same["tar"] == recipe_hash(load_recipe("test"))  # init = vma: no layers
    assert _hashes_of_a_copy(tmp_path, "di/progress.py") == same  # no effect on images
    build = _hashes_of_a_copy(tmp_path, "di/build.py")
    assert build["base"] == same["base"]
    assert build["tar"] != same["tar"]
    assert build["qcow2"] != same["qcow2"]
    stage = _hashes_of_a_copy(tmp_path, "di/osstage.py")
    assert stage["base"] != same["base"]
    assert stage["tar"] not in (same["tar"], build["tar"])
    assert stage["vm"] != same["vm"]  # the VM stage sits on the OS stage
    vma = _hashes_of_a_copy(tmp_path, "vma/server.py")
    assert (vma["base"], vma["vm"]) == (same["base"], same["vm"])
    assert vma["tar"] != same["tar"]
    assert vma["qcow2"] != same["qcow2"]
    for module in ("di/qcow2.py", "di/sysinit.py"):
        kvm = _hashes_of_a_copy(tmp_path, module)
        assert (kvm["base"], kvm["tar"], kvm["vm"]) == (same["base"], same["tar"], same["vm"])
        assert kvm["qcow2"] != same["qcow2"], module
    vm_stage = _hashes_of_a_copy(tmp_path, "di/vmstage.py")
    assert (vm_stage["base"], vm_stage["tar"]) == (same["base"], same["tar"])
    assert vm_stage["vm"] != same["vm"]
    assert vm_stage["qcow2"] != same["qcow2"]


def test_init_key() -> None:
    plain = parse_recipe(MINIMAL + 'packages = ["python3"]\n')
    assert plain.init == "vma"
    assert "init" not in plain.as_data()  # recipes without the key keep their hashes
    systemd = parse_recipe(MINIMAL + 'packages = ["python3", "systemd-sysv"]\ninit = "systemd"\n')
    assert systemd.init == "systemd"
    assert systemd.as_data()["init"] == "systemd"
    test = load_recipe("test")
    as_systemd = dataclasses.replace(
        test, init="systemd", packages=(*test.packages, "systemd-sysv")
    )
    with_sysv = dataclasses.replace(test, packages=as_systemd.packages)
    assert base_hash(as_systemd) == base_hash(with_sysv)  # the same OS stage
    assert recipe_hash(as_systemd) != recipe_hash(with_sysv)
    # systemd as init adds its unit and code to the tarball's hash
    assert image_hash(as_systemd) != recipe_hash(as_systemd)
    assert image_hash(with_sysv) == recipe_hash(with_sysv)
    # a KVM image always boots systemd: its hash differs from any tarball's; the VM
    # stage depends on the OS stage only
    qcow2 = output_format("qcow2")
    assert image_hash(test, qcow2) not in (image_hash(test), recipe_hash(test))
    assert vm_stage_key(test) == vm_stage_key(dataclasses.replace(test, init="systemd"))
    assert vm_stage_key(test) != vm_stage_key(with_sysv)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL + 'packages = ["python3"]\nfoo = 1\n', "unknown keys"),
        (MINIMAL + 'packages = ["xterm"]\n', "python3"),
        (MINIMAL + 'packages = ["python3", "bad name"]\n', "bad package"),
        (MINIMAL.replace("bookworm", "sid") + 'packages = ["python3"]\n', "suite"),
        (MINIMAL + 'packages = ["python3"]\nremove = ["../etc"]\n', "relative"),
        (MINIMAL + "packages = [", "recipes/x"),
        (MINIMAL + 'packages = ["python3"]\ninit = "upstart"\n', "'init' must be one of"),
        (MINIMAL + 'packages = ["python3"]\ninit = "systemd"\n', "systemd-sysv"),
        (MINIMAL + 'packages = ["python3"]\n[vma_conf]\n"vma.init" = "systemd"\n', "'init' key"),
    ],
)
def test_invalid_recipes(text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe(text, source="recipes/x.toml")


def test_unknown_recipe_names_the_known_ones() -> None:
    with pytest.raises(RecipeError, match="desktop, test"):
        load_recipe("nope")
