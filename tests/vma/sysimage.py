"""The `test` image with systemd as its init (the VMA as ``qvd-vma.service``), built
once per machine and cached like the `test` image.

Made from the `test` recipe with ``init = "systemd"`` and systemd's packages. Until the
builder knows the ``init`` key (it installs and enables the unit itself), the image is
made from the same recipe with ``vma.init = systemd`` in its ``vma.conf`` and the unit
added to a copy, cached next to it under the same recipe hash.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tempfile
from pathlib import Path

from qvd.di.archive import pack_tree, unpack_image
from qvd.di.build import build_image
from qvd.di.recipe import Recipe, load_recipe
from qvd.vma.systemd import UNIT_NAME, unit_text

__all__ = ["SYSTEMD_PACKAGES", "systemd_test_image"]

SYSTEMD_PACKAGES = ("systemd", "systemd-sysv", "dbus")
_NOT_IN_A_DESKTOP = ("console-getty.service", "getty@.service", "container-getty@.service")


def _recipe() -> Recipe:
    base = load_recipe("test")
    packages = (*base.packages, *(p for p in SYSTEMD_PACKAGES if p not in base.packages))
    changes: dict[str, object] = {"name": "test-systemd", "packages": packages}
    if "init" in {f.name for f in dataclasses.fields(Recipe)}:
        changes["init"] = "systemd"
    else:
        changes["vma_conf"] = (*base.vma_conf, ("vma.init", "systemd"))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _with_unit(image: Path) -> Path:
    """A copy of ``image`` with the VMA's unit installed and enabled (cached)."""
    done = image.with_name(image.name.removesuffix(".tar.zst") + "-unit.tar.zst")
    if done.exists():
        return done
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="qvd-sysimage-") as tmp:
        root = Path(tmp) / "root"
        unpack_image(image, root)
        unit = root / "usr/lib/systemd/system" / UNIT_NAME
        unit.write_text(unit_text(), encoding="utf-8")
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / UNIT_NAME).symlink_to(f"/usr/lib/systemd/system/{UNIT_NAME}")
        for masked in _NOT_IN_A_DESKTOP:
            link = root / "etc/systemd/system" / masked
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        shutil.rmtree(root / "dev", ignore_errors=True)
        (root / "dev").mkdir()
        pack_tree(root, done, step="pack", log=io.StringIO())
    return done


def systemd_test_image(cache: Path | None = None) -> Path:
    """The image file (built first if the cache lacks it)."""
    from qvd.di import default_cache_dir

    recipe = _recipe()
    cache = cache or (Path(os.environ["QVD_TEST_DI_CACHE"]) if "QVD_TEST_DI_CACHE" in os.environ
                      else default_cache_dir())  # fmt: skip
    image = build_image(recipe, cache, progress=lambda p: print(p.render(), flush=True))
    if "init" in {f.name for f in dataclasses.fields(Recipe)}:
        return image
    return _with_unit(image)


if __name__ == "__main__":
    print(systemd_test_image())
