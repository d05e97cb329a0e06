"""Building an image from a recipe, in cached stages.

Stage 1, the operating system (cached as ``stages/<name>-base-<base_hash>.tar.zst``):
``bootstrap``, ``packages``, ``configure`` and ``cleanup`` (in ``qvd.di.osstage``).
An output format may add its own cached stage on top of it (the KVM image's VM stage,
``stages/<name>-<label>-<key>.tar.zst``: kernel, initrd, systemd).
Stage 2, the image (``<name>-<image_hash><suffix>``): ``vma`` (the agent's source,
launcher and ``vma.conf``), the format's ``finish`` steps (systemd as init when the
recipe or the format asks for it) and ``pack``. Formats: ``LxcTarball`` here (the
default) and ``qvd.di.qcow2.Qcow2Image`` (KVM), found by name in ``qvd.di.formats``.

Each step reports progress; a failing step raises ``BuildError`` with its name, the
reason and the last lines of output; the full log stays in ``<cache>/logs/``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from qvd.di.archive import pack_tree, tree_bytes, unpack_image
from qvd.di.commands import CLEAN_ENV, mounts_under, run_tool
from qvd.di.errors import BuildError, DiError
from qvd.di.osstage import bootstrap, chroot, cleanup, configure, install_packages
from qvd.di.progress import ProgressSink, StepPlan
from qvd.di.recipe import Recipe, base_hash, recipe_hash, vma_source_files
from qvd.di.sysinit import configure_systemd, layer_files

__all__ = [
    "KEEP_VERSIONS",
    "VMA_LAUNCHER",
    "VMA_PYTHON_DIR",
    "VMA_SHARE_LAUNCHER",
    "VMA_SLAVE_LAUNCHER",
    "CachedStage",
    "ImageInfo",
    "LxcTarball",
    "OutputFormat",
    "build_image",
    "image_hash",
    "image_path",
    "meta_path",
    "read_image_info",
]

VMA_PYTHON_DIR = "usr/lib/qvd/python"
# Versions of an image (or stage) the cache keeps per recipe and format: the current one
# and a few older, so that checkouts of different versions on one machine (branches,
# worktrees) do not rebuild each other's images at every run.
KEEP_VERSIONS = 3
VMA_LAUNCHER = "usr/lib/qvd/bin/qvd-vma"
# nxagent's NX_SLAVE_CMD (config command.slave): one run per client→VM slave connection
VMA_SLAVE_LAUNCHER = "usr/lib/qvd/bin/qvd-vma-slave"
# the desktop user's command: a desktop folder opened on the client (VM→client slave)
VMA_SHARE_LAUNCHER = "usr/lib/qvd/bin/qvd-share-to-client"

_LAUNCHER = """#!/usr/bin/python3 -IS
# QVD VM agent launcher, written by `qvd di build`.
import sys

sys.path.insert(0, "/usr/lib/qvd/python")
from qvd.vma.{module} import main  # noqa: E402

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


StageBuilder = Callable[[Recipe, Path, StepPlan, TextIO], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedStage:
    """A stage an output format adds over the OS stage, cached like it under
    ``stages/<recipe>-<label>-<key>.tar.zst``; ``build`` turns the OS root into it and
    reports on ``steps``, whose last one is the caching of the result."""

    label: str
    key: str
    steps: tuple[tuple[str, float], ...]
    build: StageBuilder


class OutputFormat(Protocol):
    """How a finished root becomes an image file for one hypervisor."""

    name: str
    suffix: str
    tools: tuple[tuple[str, str], ...]  # (program, Debian package) the format runs

    def layers(self, recipe: Recipe) -> list[tuple[str, bytes]]:
        """What the image depends on beyond the recipe and the builder (hash input)."""
        ...

    def stage(self, recipe: Recipe) -> CachedStage | None:
        """The format's own cached stage over the OS stage, if it has one."""
        ...

    def steps(self, recipe: Recipe) -> list[tuple[str, float]]:
        """The (step, weight) of ``finish`` and ``pack``, run after the VMA is installed."""
        ...

    def finish(self, recipe: Recipe, root: Path, plan: StepPlan, log: TextIO) -> None:
        """Last changes to the root before it is packed."""
        ...

    def pack(self, root: Path, dest: Path, plan: StepPlan, log: TextIO) -> None:
        """Write the image file ``dest`` from ``root``."""
        ...


class LxcTarball:
    """LXC images: the root as ``.tar.zst``; systemd as init if the recipe says so."""

    name = "lxc-tar-zst"
    suffix = ".tar.zst"
    tools: tuple[tuple[str, str], ...] = (("tar", "tar"), ("zstd", "zstd"))

    def layers(self, recipe: Recipe) -> list[tuple[str, bytes]]:
        return layer_files() if recipe.init == "systemd" else []

    def stage(self, recipe: Recipe) -> CachedStage | None:
        return None

    def steps(self, recipe: Recipe) -> list[tuple[str, float]]:
        init = [("init", 0.5)] if recipe.init == "systemd" else []
        return [*init, ("pack", 8.0)]

    def finish(self, recipe: Recipe, root: Path, plan: StepPlan, log: TextIO) -> None:
        if recipe.init == "systemd":
            configure_systemd(root, plan, log, vm=False)

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
    return image.with_name(image.name.split(".tar")[0].removesuffix(".qcow2") + ".json")


def image_hash(recipe: Recipe, fmt: OutputFormat | None = None) -> str:
    """The hash that names the image of ``recipe`` in format ``fmt`` (an LXC tarball of
    a recipe whose init is the VMA: ``recipe_hash``)."""
    return recipe_hash(recipe, layers=(fmt or LxcTarball()).layers(recipe))


def image_path(cache: Path, recipe: Recipe, fmt: OutputFormat | None = None) -> Path:
    """Where the image of ``recipe`` lives (or will live) in the cache."""
    fmt = fmt or LxcTarball()
    return cache / f"{recipe.name}-{image_hash(recipe, fmt)}{fmt.suffix}"


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
    for path, module in (
        (VMA_LAUNCHER, "main"),
        (VMA_SLAVE_LAUNCHER, "slave"),
        (VMA_SHARE_LAUNCHER, "sharetoclient"),
    ):
        launcher = root / path
        launcher.parent.mkdir(parents=True, exist_ok=True)
        launcher.write_text(_LAUNCHER.replace("{module}", module), encoding="utf-8")
        launcher.chmod(0o755)
    mtab = root / "etc/mtab"  # fusermount3 (shared folders) unmounts only with it
    if not mtab.exists() and not mtab.is_symlink():
        mtab.symlink_to("../proc/self/mounts")
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


def _os_steps(recipe: Recipe) -> list[tuple[str, float]]:
    return [
        ("bootstrap", 55.0),
        ("packages", 25.0 if recipe.extra_packages else 0.5),
        ("configure", 0.5),
        ("cleanup", 2.0),
        ("stage", 8.0),
    ]


def _versions(folder: Path, prefix: str, suffix: str) -> list[Path]:
    """Files ``<prefix>-<16 hex digits><suffix>`` in ``folder``, newest first."""
    name = re.compile(rf"{re.escape(prefix)}-[0-9a-f]{{16}}{re.escape(suffix)}")
    found = [p for p in folder.glob(f"{prefix}-*{suffix}") if name.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _cache_stage(
    root: Path, stage: Path, prefix: str, step: str, plan: StepPlan, log: TextIO
) -> None:
    """Pack ``root`` as the cached ``stage`` (``<prefix>-<key>.tar.zst``), keeping only
    the newest versions of it."""
    plan.report(step, 0.0, f"caching {stage.name}")
    stage.parent.mkdir(parents=True, exist_ok=True)
    pack_tree(
        root,
        stage,
        step=step,
        log=log,
        on_fraction=lambda f: plan.report(step, f, f"caching {stage.name}"),
    )
    for old in _versions(stage.parent, prefix, ".tar.zst")[KEEP_VERSIONS:]:
        if old != stage:
            old.unlink(missing_ok=True)


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
    missing = [f"{tool} ({package})" for tool, package in fmt.tools
               if shutil.which(tool, path=CLEAN_ENV["PATH"]) is None]  # fmt: skip
    if missing:
        raise BuildError(
            "tools", f"missing {', '.join(missing)}: run scripts/deps-di.sh (or apt-get install)"
        )
    rhash, bhash = image_hash(recipe, fmt), base_hash(recipe)
    dest = image_path(cache, recipe, fmt)
    with _locked(cache / f".{recipe.name}.lock"):
        if dest.is_file() and meta_path(dest).is_file() and not force:
            return dest
        stages = cache / "stages"
        stage = stages / f"{recipe.name}-base-{bhash}.tar.zst"
        extra = fmt.stage(recipe)
        extra_file = stages / f"{recipe.name}-{extra.label}-{extra.key}.tar.zst" if extra else None
        have_extra = extra_file is not None and extra_file.is_file() and not force
        have_stage = stage.is_file() and not force
        steps: list[tuple[str, float]] = []
        if have_extra or have_stage:
            steps.append(("unpack", 8.0))
        else:
            steps += _os_steps(recipe)
        if extra is not None and not have_extra:
            steps += extra.steps
        steps += [("vma", 2.0), *fmt.steps(recipe)]
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
                if have_extra or have_stage:
                    cached = extra_file if have_extra and extra_file else stage
                    plan.report("unpack", 0.0, f"reusing {cached.name}")
                    unpack_image(cached, root, log=log)
                    plan.report("unpack", 1.0, "unpacked")
                else:
                    bootstrap(recipe, root, plan, log, _expected_packages(cache, recipe))
                    install_packages(recipe, root, plan, log)
                    configure(recipe, root, plan)
                    cleanup(recipe, root, plan, log)
                    prefix = f"{recipe.name}-base"
                    _cache_stage(root, stage, prefix, "stage", plan, log)
                if extra is not None and extra_file is not None and not have_extra:
                    extra.build(recipe, root, plan, log)
                    prefix = f"{recipe.name}-{extra.label}"
                    _cache_stage(root, extra_file, prefix, extra.steps[-1][0], plan, log)
                _install_vma(recipe, root, plan, log, rhash)
                fmt.finish(recipe, root, plan, log)
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
        _prune_older(cache, recipe, dest, fmt.suffix)
        return dest


def _prune_older(cache: Path, recipe: Recipe, keep: Path, suffix: str) -> None:
    """Drop the recipe's older images of this format beyond the newest few (the recipe's
    images of other formats stay)."""
    for old in _versions(cache, recipe.name, suffix)[KEEP_VERSIONS:]:
        if old != keep:
            meta_path(old).unlink(missing_ok=True)
            old.unlink(missing_ok=True)
