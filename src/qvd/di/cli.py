"""``qvd di …``: build and inspect disk images (a Typer sub-app, mounted by ``qvd``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from qvd.di.build import build_image, image_hash, image_path, read_image_info
from qvd.di.errors import BuildError, DiError
from qvd.di.formats import DEFAULT_FORMAT, FORMAT_NAMES, output_format
from qvd.di.images import default_cache_dir
from qvd.di.progress import Progress
from qvd.di.recipe import load_recipe, recipe_names

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


FormatOption = Annotated[
    str,
    typer.Option(
        "--format", help=f"Image format: {' or '.join(FORMAT_NAMES)} (KVM).", show_default=True
    ),
]


def copy_out(image: Path, output: Path) -> Path:
    """Copy ``image`` to ``output`` (a file, or a directory to put it in), atomically."""
    dest = output / image.name if output.is_dir() else output
    if not dest.parent.is_dir():
        raise DiError(f"{dest.parent}: no such directory for --output")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(image, tmp)
        except OSError:  # another file system
            shutil.copyfile(image, tmp)
        tmp.replace(dest)
    except OSError as exc:
        raise DiError(f"cannot write {dest}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


@app.command()
def build(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `qvd di recipes`).")],
    cache: CacheOption = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
    fmt: FormatOption = DEFAULT_FORMAT,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Also copy the image there (a file or a directory)."),
    ] = None,
) -> None:
    """Build the image of a recipe (or reuse the cached one) and print its path."""
    try:
        path = build_image(
            load_recipe(recipe),
            cache or default_cache_dir(),
            progress=ProgressPrinter(),
            force=force,
            fmt=output_format(fmt),
        )
        if output is not None:
            path = copy_out(path, output)
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
    info = read_image_info(image_path(cache or default_cache_dir(), load_recipe(recipe),
                                      output_format(fmt)))  # fmt: skip
    typer.echo(f"{path} ({info.image_bytes / 2**20:.1f} MiB, {len(info.packages)} packages)")


@app.command()
def recipes(cache: CacheOption = None, fmt: FormatOption = DEFAULT_FORMAT) -> None:
    """List the recipes, their hashes and whether their image is cached."""
    folder = cache or default_cache_dir()
    try:
        form = output_format(fmt)
    except DiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for name in recipe_names():
        recipe = load_recipe(name)
        path = image_path(folder, recipe, form)
        state = "cached" if path.is_file() else "not built"
        typer.echo(f"{name:10} {image_hash(recipe, form)}  {state:9}  {recipe.description}")


@app.command()
def info(recipe: str, cache: CacheOption = None, fmt: FormatOption = DEFAULT_FORMAT) -> None:
    """Show the metadata of a recipe's cached image."""
    try:
        path = image_path(cache or default_cache_dir(), load_recipe(recipe), output_format(fmt))
        if not path.is_file():
            hint = f" --format {fmt}" if fmt != DEFAULT_FORMAT else ""
            typer.echo(
                f"error: {recipe!r} is not built (run `qvd di build {recipe}{hint}`)", err=True
            )
            raise typer.Exit(1)
        typer.echo(read_image_info(path).to_json(), nl=False)
    except DiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
