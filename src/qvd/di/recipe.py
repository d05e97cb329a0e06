"""Recipes: declarative TOML files kept in ``qvd/di/recipes/``, and their hashes.

A recipe names a Debian suite, the packages debootstrap includes, extra packages that
apt installs inside the new root, paths to remove before packing, and the settings
written to the image's ``/etc/qvd/vma.conf``, and the image's init: ``init = "vma"`` (the
default: the VMA is the container's init) or ``"systemd"`` (systemd is the init and starts
the VMA as ``qvd-vma.service``; the recipe must install ``systemd-sysv``). A KVM image
(qcow2) always boots systemd, whatever the recipe says, on the recipe's ``kernel``
(``linux-image-cloud-amd64`` by default; ``linux-image-amd64`` for USB/IP guests).

Two hashes key the cache: ``base_hash`` covers what the operating-system stage
depends on (suite, variant, package lists, removals, and the source of the code that
makes the stage); ``recipe_hash`` covers the whole recipe, the VMA's source files and
the source of the whole builder, so a change to the VMA or to the image stage rebuilds
only the cheap final stage, and a changed builder never hides behind a warm cache.
An output format or init that adds its own stages (systemd as init, the KVM image) adds
their files as ``layers`` to ``recipe_hash``; without layers the hash is the LXC
tarball's, which those files never move.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from qvd.di.errors import RecipeError

__all__ = [
    "BUILDER_FORMAT",
    "DEFAULT_KERNEL",
    "INITS",
    "KERNELS",
    "Recipe",
    "base_hash",
    "builder_source_files",
    "load_recipe",
    "module_files",
    "parse_recipe",
    "recipe_hash",
    "recipe_names",
    "vma_source_files",
]

# Bump when the builder lays out images differently (invalidates every cache entry).
BUILDER_FORMAT = 1

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.\-]+$")
_SUITES = ("bookworm",)
_VARIANTS = ("minbase",)
INITS = ("vma", "systemd")
# The kernel of a KVM image (``qvd.di.vmstage``): the cloud flavour boots fastest but has
# no USB at all; the generic one carries usbip-core and vhci-hcd (USB/IP, issue #16).
KERNELS = ("linux-image-cloud-amd64", "linux-image-amd64")
DEFAULT_KERNEL = KERNELS[0]
_SET_BY_INIT = "vma.init"  # written by the builder from ``init``, never by vma_conf


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """One image recipe, validated."""

    name: str
    description: str
    suite: str
    variant: str
    packages: tuple[str, ...]
    extra_packages: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    vma_conf: tuple[tuple[str, str], ...] = field(default=())
    init: str = "vma"
    kernel: str = DEFAULT_KERNEL

    def as_data(self) -> dict[str, object]:
        """A canonical, JSON-ready form (the input of the hashes). ``init`` appears only
        when it is not the default, so recipes without it keep their hashes."""
        data: dict[str, object] = {
            "name": self.name,
            "description": self.description,
            "suite": self.suite,
            "variant": self.variant,
            "packages": list(self.packages),
            "extra_packages": list(self.extra_packages),
            "remove": list(self.remove),
            "vma_conf": [list(kv) for kv in self.vma_conf],
        }
        if self.init != "vma":
            data["init"] = self.init
        if self.kernel != DEFAULT_KERNEL:
            data["kernel"] = self.kernel
        return data


def _strings(data: dict[str, object], key: str, *, required: bool, source: str) -> list[str]:
    value = data.get(key, None if required else [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecipeError(f"{source}: {key!r} must be a list of strings")
    return [str(v) for v in value]


def _string(data: dict[str, object], key: str, source: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{source}: {key!r} must be a non-empty string")
    return value


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate recipe TOML; errors name the source and the field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: {exc}") from None
    known = {"name", "description", "suite", "variant", "packages", "extra_packages"}
    known |= {"remove", "vma_conf", "init", "kernel"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"{source}: unknown keys {unknown}")
    name = _string(data, "name", source)
    if not _NAME.match(name):
        raise RecipeError(f"{source}: bad recipe name {name!r}")
    suite = _string(data, "suite", source)
    if suite not in _SUITES:
        raise RecipeError(f"{source}: suite {suite!r} not supported (have {_SUITES})")
    variant = _string(data, "variant", source)
    if variant not in _VARIANTS:
        raise RecipeError(f"{source}: variant {variant!r} not supported (have {_VARIANTS})")
    packages = _strings(data, "packages", required=True, source=source)
    extra = _strings(data, "extra_packages", required=False, source=source)
    for pkg in packages + extra:
        if not _PACKAGE.match(pkg):
            raise RecipeError(f"{source}: bad package name {pkg!r}")
    if "python3" not in packages:
        raise RecipeError(f"{source}: 'python3' must be in packages (the VMA needs it)")
    remove = _strings(data, "remove", required=False, source=source)
    for rel in remove:
        parts = Path(rel).parts
        if rel.startswith("/") or ".." in parts or not parts:
            raise RecipeError(f"{source}: remove entries are relative paths: {rel!r}")
    conf = data.get("vma_conf", {})
    if not isinstance(conf, dict) or not all(isinstance(v, str) for v in conf.values()):
        raise RecipeError(f"{source}: 'vma_conf' must be a table of strings")
    if _SET_BY_INIT in conf:
        raise RecipeError(f"{source}: {_SET_BY_INIT!r} comes from the 'init' key, not vma_conf")
    init = data.get("init", "vma")
    if init not in INITS:
        raise RecipeError(f"{source}: 'init' must be one of {list(INITS)}, not {init!r}")
    if init == "systemd" and "systemd-sysv" not in packages:
        raise RecipeError(f"{source}: init = 'systemd' needs 'systemd-sysv' in packages")
    kernel = data.get("kernel", DEFAULT_KERNEL)
    if kernel not in KERNELS:
        raise RecipeError(f"{source}: 'kernel' must be one of {list(KERNELS)}, not {kernel!r}")
    return Recipe(
        name=name,
        description=_string(data, "description", source),
        suite=suite,
        variant=variant,
        packages=tuple(packages),
        extra_packages=tuple(extra),
        remove=tuple(remove),
        vma_conf=tuple(sorted((str(k), str(v)) for k, v in conf.items())),
        init=str(init),
        kernel=str(kernel),
    )


def recipe_names() -> list[str]:
    """Names of the recipes shipped in the package."""
    folder = resources.files("qvd.di") / "recipes"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_recipe(name: str) -> Recipe:
    """Load a shipped recipe by name."""
    if not _NAME.match(name):
        raise RecipeError(f"bad recipe name {name!r}")
    entry = resources.files("qvd.di") / "recipes" / f"{name}.toml"
    if not entry.is_file():
        raise RecipeError(f"no recipe named {name!r} (have: {', '.join(recipe_names())})")
    recipe = parse_recipe(entry.read_text(encoding="utf-8"), source=f"recipes/{name}.toml")
    if recipe.name != name:
        raise RecipeError(f"recipes/{name}.toml declares name {recipe.name!r}")
    return recipe


def vma_source_files() -> list[tuple[str, bytes]]:
    """(relative path, content) of every file the image gets from ``qvd/vma``, sorted."""
    root = resources.files("qvd.vma")
    found: list[tuple[str, bytes]] = []

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for child in node.iterdir():
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                if child.name != "__pycache__":
                    walk(child, rel + "/")
            elif child.name.endswith(".py"):
                found.append((rel, child.read_bytes()))

    walk(root, "")
    return sorted(found)


# The modules whose code decides what an image holds. The OS stage's are a subset: the
# cached stage is rebuilt when they change, the image when any of them does.
_STAGE_MODULES = ("archive.py", "commands.py", "mirror.py", "osstage.py")
_IMAGE_MODULES = (*_STAGE_MODULES, "build.py", "recipe.py")


def builder_source_files(*, stage_only: bool = False) -> list[tuple[str, bytes]]:
    """(file name, content) of the builder's modules in ``qvd/di`` (those of the OS
    stage only, with ``stage_only``), sorted."""
    return module_files(_STAGE_MODULES if stage_only else _IMAGE_MODULES)


def module_files(names: Sequence[str]) -> list[tuple[str, bytes]]:
    """(file name, content) of the named modules of ``qvd/di``, sorted."""
    folder = resources.files("qvd.di")
    return sorted((name, (folder / name).read_bytes()) for name in names)


def _files_digest(files: list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for rel, content in files:
        digest.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


def _digest(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def base_hash(recipe: Recipe) -> str:
    """Hash of what the operating-system stage depends on."""
    return _digest(
        {
            "format": BUILDER_FORMAT,
            "suite": recipe.suite,
            "variant": recipe.variant,
            "packages": list(recipe.packages),
            "extra_packages": list(recipe.extra_packages),
            "remove": list(recipe.remove),
            "builder": _files_digest(builder_source_files(stage_only=True)),
        }
    )


def recipe_hash(recipe: Recipe, *, layers: Sequence[tuple[str, bytes]] = ()) -> str:
    """Hash of the whole image: recipe, builder format and source, the VMA source, and
    the ``layers`` (name, content) that an init or output format adds."""
    payload: dict[str, object] = {
        "format": BUILDER_FORMAT,
        "recipe": recipe.as_data(),
        "vma": _files_digest(vma_source_files()),
        "builder": _files_digest(builder_source_files()),
    }
    if layers:
        payload["layers"] = _files_digest(sorted(layers))
    return _digest(payload)
