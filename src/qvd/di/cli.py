"""``qvd di …``: build and inspect disk images (a Typer sub-app, mounted by ``qvd``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qvd.di.build import build_image, image_path, read_image_info
from qvd.di.errors import BuildError, DiError
from qvd.di.images import default_cache_dir
from qvd.di.progress import Progress
from qvd.di.recipe import load_recipe, recipe_hash, recipe_names

__all__ = ["ProgressPrinter", "app"]

app = typer.Typer(help="Disk images: build them from recipes, list and inspect them.")

CacheOption = Annotated[
    Path | None, typer.Option("--cache", help="Image cache directory (default: path.cache.di).")
]


class ProgressPrinter:
    """Prints a line when the step changes or the percentage moves by a whole step."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self._step = ""
        self._percent = -100.0

    def __call__(self, progress: Progress) -> None:
        if progress.step == self._step and progress.percent - self._percent < self.every:
            return
        self._step, self._percent = progress.step, progress.percent
        typer.echo(progress.render())


@app.command()
def build(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `qvd di recipes`).")],
    cache: CacheOption = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
) -> None:
    """Build the image of a recipe (or reuse the cached one) and print its path."""
    try:
        path = build_image(
            load_recipe(recipe),
            cache or default_cache_dir(),
            progress=ProgressPrinter(),
            force=force,
        )
    except BuildError as exc:
        typer.echo(
            f"error: build of {recipe!r} failed in step {exc.step!r}: {exc.reason}", err=True
        )
        if exc.log_tail:
            typer.echo(exc.log_tail, err=True)
        raise typer.Exit(1) from None
    except DiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    info = read_image_info(path)
    typer.echo(f"{path} ({info.image_bytes / 2**20:.1f} MiB, {len(info.packages)} packages)")


@app.command()
def recipes(cache: CacheOption = None) -> None:
    """List the recipes, their hashes and whether their image is cached."""
    folder = cache or default_cache_dir()
    for name in recipe_names():
        recipe = load_recipe(name)
        path = image_path(folder, recipe)
        state = "cached" if path.is_file() else "not built"
        typer.echo(f"{name:10} {recipe_hash(recipe)}  {state:9}  {recipe.description}")


@app.command()
def info(recipe: str, cache: CacheOption = None) -> None:
    """Show the metadata of a recipe's cached image."""
    try:
        path = image_path(cache or default_cache_dir(), load_recipe(recipe))
        if not path.is_file():
            typer.echo(f"error: {recipe!r} is not built (run `qvd di build {recipe}`)", err=True)
            raise typer.Exit(1)
        typer.echo(read_image_info(path).to_json(), nl=False)
    except DiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
