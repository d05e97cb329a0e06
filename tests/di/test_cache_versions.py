"""The image cache keeps the newest few versions of a recipe's image per format (several
checkouts of different versions share one machine's cache), never another recipe's
images nor the same recipe's images of another format; a build whose tools are missing
says which package to install before it starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qvd.di import BuildError, build_image
from qvd.di.build import KEEP_VERSIONS, LxcTarball, _prune_older
from qvd.di.recipe import load_recipe


def _image(cache: Path, name: str, age: int) -> Path:
    image = cache / name
    image.write_bytes(b"image")
    image.with_name(name.split(".")[0] + ".json").write_text("{}")
    stamp = 1_700_000_000 - age
    os.utime(image, (stamp, stamp))
    return image


def test_the_newest_versions_stay(tmp_path: Path) -> None:
    qcow2 = [_image(tmp_path, f"test-{age:016x}.qcow2", age) for age in range(6)]
    tarball = _image(tmp_path, f"test-{99:016x}.tar.zst", 99)
    other = _image(tmp_path, f"test-x-{98:016x}.qcow2", 98)
    _prune_older(tmp_path, load_recipe("test"), qcow2[0], ".qcow2")
    left = sorted(p.name for p in tmp_path.iterdir())
    kept = qcow2[:KEEP_VERSIONS]
    expected = [p.name for p in (*kept, tarball, other)]
    expected += [p.name.split(".")[0] + ".json" for p in (*kept, tarball, other)]
    assert left == sorted(expected)


class _NeedsAMissingTool(LxcTarball):
    tools = (("qvd-no-such-tool", "qvd-no-such-package"),)


def test_a_missing_tool_is_named_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"qvd-no-such-tool \(qvd-no-such-package\)") as info:
        build_image(load_recipe("tiny"), tmp_path, fmt=_NeedsAMissingTool())
    assert info.value.step == "tools"
    assert list(tmp_path.iterdir()) == []
