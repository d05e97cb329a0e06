"""Building an image from a recipe, in cached stages.

Stage 1, the operating system (cached as ``stages/<name>-base-<base_hash>.tar.zst``):
``bootstrap``, ``packages``, ``configure`` and ``cleanup`` (in ``qvd.di.osstage``).
Stage 2, the image (``<name>-<recipe_hash>``): ``vma`` (the agent's source, launcher
and ``vma.conf``) and ``pack`` through an output format. Only LXC tarballs exist
today; a KVM format (qcow2 + kernel) is another ``OutputFormat`` with its own ``pack``.

Each step reports progress; a failing step raises ``BuildError`` with its name, the
reason and the last lines of output; the full log stays in ``<cache>/logs/``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from qvd.di.archive import pack_tree, tree_bytes, unpack_image
from qvd.di.commands import CLEAN_ENV, mounts_under, run_tool
from qvd.di.errors import BuildError, DiError
from qvd.di.osstage import bootstrap, chroot, cleanup, configure, install_packages
from qvd.di.progress import ProgressSink, StepPlan
from qvd.di.recipe import Recipe, base_hash, recipe_hash, vma_source_files

__all__ = [
    "VMA_LAUNCHER",
    "VMA_PYTHON_DIR",
    "ImageInfo",
    "LxcTarball",
    "OutputFormat",
    "build_image",
    "image_path",
    "meta_path",
    "read_image_info",
]

VMA_PYTHON_DIR = "usr/lib/qvd/python"
VMA_LAUNCHER = "usr/lib/qvd/bin/qvd-vma"

_LAUNCHER = """#!/usr/bin/python3 -IS
# QVD VM agent launcher, written by `qvd di build`.
import sys

sys.path.insert(0, "/usr/lib/qvd/python")
from qvd.vma.main import main  # noqa: E402

raise SystemExit(main(sys.argv[1:]))
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageInfo:
    """The metadata file written next to each image."""

    recipe: str
    recipe_hash: str
    base_hash: str
    built_at: str
    suite: str
    format: str
    file: str
    image_bytes: int
    rootfs_bytes: int
    packages: dict[str, str]

    def to_json(self) -> str:
        data = {name: getattr(self, name) for name in self.__slots__}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def read_image_info(image: Path) -> ImageInfo:
    """Metadata of a built image (``<image>.json``)."""
    meta = meta_path(image)
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        return ImageInfo(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise DiError(f"{meta}: unreadable image metadata: {exc}") from None


class OutputFormat(Protocol):
    """How a finished root becomes an image file for one hypervisor."""

    name: str
    suffix: str

    def pack(self, root: Path, dest: Path, plan: StepPlan, log: TextIO) -> None: ...


class LxcTarball:
    """LXC images: the root as ``.tar.zst``."""

    name = "lxc-tar-zst"
    suffix = ".tar.zst"

    def pack(self, root: Path, dest: Path, plan: StepPlan, log: TextIO) -> None:
        plan.report("pack", 0.0, f"packing {dest.name}")
        pack_tree(
            root,
            dest,
            step="pack",
            log=log,
            on_fraction=lambda f: plan.report("pack", f, f"packing {dest.name}"),
        )
        plan.report("pack", 1.0, f"wrote {dest.name}")


def meta_path(image: Path) -> Path:
    """The metadata file of an image (``<name>.json`` beside it)."""
    return image.with_name(image.name.split(".tar")[0] + ".json")


def image_path(cache: Path, recipe: Recipe, fmt: OutputFormat | None = None) -> Path:
    """Where the image of ``recipe`` lives (or will live) in the cache."""
    suffix = (fmt or LxcTarball()).suffix
    return cache / f"{recipe.name}-{recipe_hash(recipe)}{suffix}"


def _install_vma(recipe: Recipe, root: Path, plan: StepPlan, log: TextIO, rhash: str) -> None:
    plan.report("vma", 0.0, "installing the VMA")
    pkg_root = root / VMA_PYTHON_DIR / "qvd"
    if pkg_root.exists():
        shutil.rmtree(pkg_root)
    (pkg_root / "vma").mkdir(parents=True)
    (pkg_root / "__init__.py").write_text(
        '"""QVD inside the image: only the VM agent (qvd.vma) is installed here."""\n',
        encoding="utf-8",
    )
    for rel, content in vma_source_files():
        dest = pkg_root / "vma" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
    launcher = root / VMA_LAUNCHER
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(_LAUNCHER, encoding="utf-8")
    launcher.chmod(0o755)
    etc = root / "etc/qvd"
    etc.mkdir(parents=True, exist_ok=True)
    lines = [f"# Written by `qvd di build {recipe.name}` (recipe hash {rhash}).\n"]
    lines += [f"{key} = {value}\n" for key, value in recipe.vma_conf]
    (etc / "vma.conf").write_text("".join(lines), encoding="utf-8")
    (root / "usr/lib/qvd/image.json").write_text(
        json.dumps({"recipe": recipe.name, "recipe_hash": rhash}) + "\n", encoding="utf-8"
    )
    run_tool(
        chroot(root, "/usr/bin/python3", "-m", "compileall", "-q", f"/{VMA_PYTHON_DIR}"),
        step="vma",
        log=log,
    )
    plan.report("vma", 1.0, "VMA installed")


def _package_versions(root: Path) -> dict[str, str]:
    result = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={root}/var/lib/dpkg",
            "-W",
            "-f",
            "${Package}\t${Version}\n",
        ],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        check=False,
    )
    versions: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, _, version = line.partition("\t")
        if name:
            versions[name] = version
    return versions


def _unmount_all(work: Path) -> None:
    for point in mounts_under(work):
        subprocess.run(["umount", "-l", point], capture_output=True, env=CLEAN_ENV)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _expected_packages(cache: Path, recipe: Recipe) -> int:
    """How many packages the last build of this recipe had (for the progress estimate)."""
    best = 150
    for meta in cache.glob(f"{recipe.name}-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            best = len(json.loads(meta.read_text(encoding="utf-8"))["packages"])
    return best


def build_image(
    recipe: Recipe,
    cache: Path,
    *,
    progress: ProgressSink | None = None,
    force: bool = False,
    fmt: OutputFormat | None = None,
) -> Path:
    """Build (or find in ``cache``) the image of ``recipe``; returns the image file."""
    fmt = fmt or LxcTarball()
    rhash, bhash = recipe_hash(recipe), base_hash(recipe)
    dest = image_path(cache, recipe, fmt)
    with _locked(cache / f".{recipe.name}.lock"):
        if dest.is_file() and meta_path(dest).is_file() and not force:
            return dest
        stage = cache / "stages" / f"{recipe.name}-base-{bhash}.tar.zst"
        have_stage = stage.is_file() and not force
        steps: list[tuple[str, float]] = (
            [("unpack", 8.0)]
            if have_stage
            else [
                ("bootstrap", 55.0),
                ("packages", 25.0 if recipe.extra_packages else 0.5),
                ("configure", 0.5),
                ("cleanup", 2.0),
                ("stage", 8.0),
            ]
        )
        steps += [("vma", 2.0), ("pack", 8.0)]
        plan = StepPlan(steps, progress)
        work = cache / "work" / f"{recipe.name}-{rhash}-{os.getpid()}"
        root = work / "rootfs"
        (cache / "logs").mkdir(parents=True, exist_ok=True)
        log_path = cache / "logs" / f"{recipe.name}-{rhash}.log"
        try:
            if work.exists():
                _unmount_all(work)
                shutil.rmtree(work)
            work.mkdir(parents=True)
            with open(log_path, "w", encoding="utf-8") as log:
                if have_stage:
                    plan.report("unpack", 0.0, f"reusing {stage.name}")
                    unpack_image(stage, root, log=log)
                    plan.report("unpack", 1.0, "unpacked")
                else:
                    bootstrap(recipe, root, plan, log, _expected_packages(cache, recipe))
                    install_packages(recipe, root, plan, log)
                    configure(recipe, root, plan)
                    cleanup(recipe, root, plan, log)
                    stage.parent.mkdir(parents=True, exist_ok=True)
                    for old in stage.parent.glob(f"{recipe.name}-base-*.tar.zst"):
                        old.unlink()
                    pack_tree(
                        root,
                        stage,
                        step="stage",
                        log=log,
                        on_fraction=lambda f: plan.report("stage", f, "caching the OS stage"),
                    )
                _install_vma(recipe, root, plan, log, rhash)
                packages = _package_versions(root)
                rootfs_bytes = tree_bytes(root)
                fmt.pack(root, dest, plan, log)
        except BuildError:
            raise
        except OSError as exc:
            raise BuildError(plan.current, str(exc)) from exc
        finally:
            _unmount_all(work)
            shutil.rmtree(work, ignore_errors=True)
        info = ImageInfo(
            recipe=recipe.name,
            recipe_hash=rhash,
            base_hash=bhash,
            built_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            suite=recipe.suite,
            format=fmt.name,
            file=dest.name,
            image_bytes=dest.stat().st_size,
            rootfs_bytes=rootfs_bytes,
            packages=packages,
        )
        meta_path(dest).write_text(info.to_json(), encoding="utf-8")
        _prune_older(cache, recipe, dest)
        return dest


def _prune_older(cache: Path, recipe: Recipe, keep: Path) -> None:
    """Drop the recipe's previous images: the cache holds the current one only."""
    for old in cache.glob(f"{recipe.name}-*"):
        if old == keep or old == meta_path(keep) or old.name.startswith(f"{recipe.name}-base-"):
            continue
        if old.name.endswith((".tar.zst", ".json")) and old.is_file():
            old.unlink(missing_ok=True)
