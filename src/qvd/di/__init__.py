"""Disk images (DIs): declarative recipes, a cached builder and the ``qvd di`` commands.

Other components call ``ensure_image(name, progress=…)`` for an image file (an LXC
tarball, or with ``fmt="qcow2"`` a KVM disk) and ``unpack_image(file, dest)`` to turn a
tarball (``.tar.zst``, ``.tar.gz`` …) into a root.
"""

from qvd.di.archive import IMAGE_SUFFIXES, unpack_image
from qvd.di.build import ImageInfo, build_image, image_hash, image_path, read_image_info
from qvd.di.errors import BuildError, DiError, RecipeError
from qvd.di.formats import FORMAT_NAMES, output_format
from qvd.di.images import cached_image, default_cache_dir, ensure_image
from qvd.di.progress import Progress, ProgressSink
from qvd.di.recipe import Recipe, base_hash, load_recipe, recipe_hash, recipe_names

__all__ = [
    "FORMAT_NAMES",
    "IMAGE_SUFFIXES",
    "BuildError",
    "DiError",
    "ImageInfo",
    "Progress",
    "ProgressSink",
    "Recipe",
    "RecipeError",
    "base_hash",
    "build_image",
    "cached_image",
    "default_cache_dir",
    "ensure_image",
    "image_hash",
    "image_path",
    "load_recipe",
    "output_format",
    "read_image_info",
    "recipe_hash",
    "recipe_names",
    "unpack_image",
]
