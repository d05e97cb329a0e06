"""The face other components use: find or build an image by recipe name."""

from __future__ import annotations

from pathlib import Path

from qvd.di.build import build_image, image_path, meta_path
from qvd.di.formats import DEFAULT_FORMAT, output_format
from qvd.di.progress import ProgressSink
from qvd.di.recipe import load_recipe

__all__ = ["cached_image", "default_cache_dir", "ensure_image"]


def default_cache_dir() -> Path:
    """``path.cache.di`` from the node configuration (default /var/cache/qvd/di)."""
    from qvd.config import load_config

    return load_config().get_path("path.cache.di")


def cached_image(
    recipe_name: str, cache: Path | None = None, *, fmt: str = DEFAULT_FORMAT
) -> Path | None:
    """The cached image of the recipe as it is now, or None if it was not built yet."""
    recipe = load_recipe(recipe_name)
    path = image_path(cache or default_cache_dir(), recipe, output_format(fmt))
    return path if path.is_file() and meta_path(path).is_file() else None


def ensure_image(
    recipe_name: str,
    progress: ProgressSink | None = None,
    *,
    cache: Path | None = None,
    force: bool = False,
    fmt: str = DEFAULT_FORMAT,
) -> Path:
    """The image file of a shipped recipe in format ``fmt`` (``lxc-tar-zst``, ``qcow2``),
    built first if the cache lacks it.

    Safe to call from several processes: a per-recipe lock makes one build and the
    others wait for it and reuse the result.
    """
    return build_image(
        load_recipe(recipe_name),
        cache or default_cache_dir(),
        progress=progress,
        force=force,
        fmt=output_format(fmt),
    )
